// Command velerostandin is a STAND-IN for the Velero server, for tests: Velero itself (a
// Kubernetes controller) cannot run here. It starts an ObjectStore plugin exactly as Velero's
// plugin manager does and replays the ObjectStore calls Velero's controllers make, each cited
// from Velero's source (github.com/vmware-tanzu/velero at d30d389b, "velero" below) and
// hashicorp/go-plugin v1.7.0 (the version velero's go.mod:26 pins; "go-plugin" below).
//
// It is built from Debian's go-plugin 1.0.1, gRPC 1.33 and protobuf packages, with stubs
// generated at build time from the .proto files in merkle_backup/plugin/proto/ (package main:
// tests/plugin/standin.py runs protoc). Where go-plugin 1.0.1's client does less than v1.7.0
// (it opens no stdio stream), this program does the rest itself.
//
// Usage:
//
//	velerostandin [global flags] COMMAND [ARGS]
//
// Global flags: --plugin PATH (the executable; Velero runs every executable file under
// /plugins), --plugin-arg ARG (repeated: arguments before Velero's own), --name (the BSL's
// provider, i.e. the plugin name), --bucket, --prefix, --config k=v (repeated: the BSL's
// config), --log-level. For tests: --kill-plugin-after N (SIGKILL the plugin once N body
// bytes have passed), --request-name X (requests name another plugin), --skip-init.
//
// Commands (NAME is a backup name, D a folder holding that backup's files named as in the
// bucket, KEY a full object key):
//
//	put-backup NAME --dir D     backup_controller.go:750-758 then object_store.go:269-312
//	operations NAME --dir D     backup_operations_controller.go:254-268
//	finalize NAME --dir D [--async]   backup_finalizer_controller.go:153-236
//	sync                        backup_sync_controller.go:111-213
//	restore NAME --out D        restore_controller.go:522-560, 834-867
//	delete NAME                 backup_deletion_controller.go:263-366
//	exists KEY | get KEY --out F | put KEY --file F | list PREFIX | prefixes PREFIX [DELIM]
//	url KEY [--ttl DURATION] | ping (go-plugin's health check)
//
// Output: one JSON line per call on stdout ({"method", "key", "ok", "result"/"error", ...}).
// Velero's log (the plugin's log lines as go-plugin relays them, and the errors Velero would
// log) goes to stderr. Exit status: 0 every call succeeded, 1 an ObjectStore call (or the
// plugin's start) failed, 2 usage.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// byteChunkSize: velero pkg/plugin/framework/object_store_client.go:32.
const byteChunkSize = 16384

// downloadURLTTL: velero pkg/persistence/object_store.go:96.
const downloadURLTTL = 10 * time.Minute

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// --- go-plugin plugins (client side only) ------------------------------------------------------

// velero pkg/plugin/framework/object_store.go and plugin_lister.go: GRPCClient wraps the
// generated client; Velero never serves these kinds itself from here.
type objectStorePlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (objectStorePlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the stand-in is a client")
}
func (objectStorePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewObjectStoreClient(c), nil
}

type pluginListerPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (pluginListerPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the stand-in is a client")
}
func (pluginListerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewPluginListerClient(c), nil
}

// --- Velero's log and the call record --------------------------------------------------------

type standin struct {
	store  ObjectStoreClient
	plugin string
	bucket string
	prefix string // the layout's rootPrefix: velero object_store_layout.go:32-49
	failed bool
	out    *json.Encoder
	ping   func() error
	// tests: the plugin is killed (SIGKILL, as a crash or an OOM kill would) once killAfter
	// body bytes have passed in total; -1: never.
	killAfter int64
	passed    int64
	killPID   int
}

// bodyBytes counts body bytes and kills the plugin when the --kill-plugin-after budget is met.
func (s *standin) bodyBytes(n int) {
	s.passed += int64(n)
	if s.killAfter >= 0 && s.passed >= s.killAfter && s.killPID > 0 {
		_ = syscall.Kill(s.killPID, syscall.SIGKILL)
		_ = s.out.Encode(map[string]interface{}{"method": "KillPlugin", "ok": true, "after_bytes": s.passed})
		s.killPID = 0
	}
}

// record writes one JSON line for a call.
func (s *standin) record(method, key string, err error, extra map[string]interface{}) {
	rec := map[string]interface{}{"method": method, "ok": err == nil}
	if key != "" {
		rec["key"] = key
	}
	for k, v := range extra {
		rec[k] = v
	}
	if err != nil {
		rec["error"] = err.Error()
		if st, ok := status.FromError(err); ok {
			rec["code"] = st.Code().String()
			rec["message"] = st.Message()
			if f := stackOf(err); f != nil {
				rec["error.file"] = fmt.Sprintf("%s:%d", f.File, f.Line)
				rec["error.function"] = f.Function
			}
		}
		s.failed = true
	}
	_ = s.out.Encode(rec)
}

// stackOf is velero's FromGRPCError (pkg/plugin/framework/common/client_errors.go:33-49): the
// first frame of a generated.Stack in the status details.
func stackOf(err error) *StackFrame {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, detail := range st.Proto().GetDetails() {
		if strings.HasSuffix(detail.GetTypeUrl(), "/generated.Stack") {
			var stack Stack
			if proto.Unmarshal(detail.GetValue(), &stack) == nil && len(stack.Frames) > 0 {
				return stack.Frames[0]
			}
		}
	}
	return nil
}

// veleroLog writes a line as Velero's logrus text formatter would, with the error's location
// as velero's ErrorLocationHook adds it (pkg/util/logging/error_location_hook.go:44-80).
func veleroLog(level, msg string, err error, fields ...string) {
	var b strings.Builder
	fmt.Fprintf(&b, "time=%q level=%s msg=%q", time.Now().UTC().Format(time.RFC3339), level, msg)
	for i := 0; i+1 < len(fields); i += 2 {
		fmt.Fprintf(&b, " %s=%q", fields[i], fields[i+1])
	}
	if err != nil {
		fmt.Fprintf(&b, " error=%q", err.Error())
		if f := stackOf(err); f != nil {
			fmt.Fprintf(&b, " error.file=%q error.function=%q", fmt.Sprintf("%s:%d", f.File, f.Line), f.Function)
		}
	}
	fmt.Fprintln(os.Stderr, b.String())
}

// --- the bucket layout (velero pkg/persistence/object_store_layout.go:32-129) -----------------

func (s *standin) backupsDir() string           { return path.Join(s.prefix, "backups") + "/" }
func (s *standin) backupDir(name string) string { return path.Join(s.backupsDir(), name) + "/" }
func (s *standin) backupKey(name, file string) string {
	return path.Join(s.backupsDir(), name, file)
}

// sideFiles: the objects PutBackup writes from a map (object_store.go:288-295).
var sideFiles = []string{"-podvolumebackups.json.gz", "-volumesnapshots.json.gz",
	"-itemoperations.json.gz", "-resource-list.json.gz", "-results.gz", "-volumeinfo.json.gz"}

// --- the eight calls, as Velero's gRPC client makes them ----------------------------------------

// putObject is velero's ObjectStoreGRPCClient.PutObject (object_store_client.go:73-101): the
// body read into a 16 KiB buffer, each Read's bytes sent as one message; at EOF CloseAndRecv.
// An empty body therefore sends no message at all.
func (s *standin) putObject(key string, body io.Reader) error {
	stream, err := s.store.PutObject(context.Background())
	if err != nil {
		return err
	}
	chunk := make([]byte, byteChunkSize)
	for {
		n, err := body.Read(chunk)
		if err == io.EOF {
			_, err := stream.CloseAndRecv()
			return err
		}
		if err != nil {
			if err := stream.CloseSend(); err != nil {
				return err
			}
			return err
		}
		err = stream.Send(&PutObjectRequest{Plugin: s.plugin, Bucket: s.bucket, Key: key, Body: chunk[0:n]})
		if err == nil {
			s.bodyBytes(n)
		}
		if err != nil {
			// A failed Send: the real error is the stream's status (grpc-go returns io.EOF here).
			if err == io.EOF {
				_, err = stream.CloseAndRecv()
			}
			return err
		}
	}
}

func (s *standin) put(key string, data []byte) error {
	sum := sha256.Sum256(data)
	err := s.putObject(key, bytes.NewReader(data))
	s.record("PutObject", key, err, map[string]interface{}{"bytes": len(data), "chunks": (len(data) + byteChunkSize - 1) / byteChunkSize, "sha256": hex.EncodeToString(sum[:])})
	return err
}

// get is GetObject read to its end, as io.Copy/io.ReadAll do in velero (restore_controller.go:846,
// object_store.go:323); a stream that ends with an error status is a failed read.
func (s *standin) get(key string, w io.Writer) error {
	stream, err := s.store.GetObject(context.Background(), &GetObjectRequest{Plugin: s.plugin, Bucket: s.bucket, Key: key})
	n, chunks := 0, 0
	h := sha256.New()
	if err == nil {
		for {
			var msg *Bytes
			msg, err = stream.Recv()
			if err == io.EOF {
				err = nil
				break
			}
			if err != nil {
				break
			}
			chunks++
			n += len(msg.Data)
			s.bodyBytes(len(msg.Data))
			h.Write(msg.Data)
			if _, werr := w.Write(msg.Data); werr != nil {
				fmt.Fprintln(os.Stderr, "velerostandin:", werr)
				os.Exit(2)
			}
		}
	}
	s.record("GetObject", key, err, map[string]interface{}{"bytes": n, "chunks": chunks, "sha256": hex.EncodeToString(h.Sum(nil))})
	return err
}

func (s *standin) exists(key string) (bool, error) {
	res, err := s.store.ObjectExists(context.Background(), &ObjectExistsRequest{Plugin: s.plugin, Bucket: s.bucket, Key: key})
	exists := err == nil && res.Exists
	s.record("ObjectExists", key, err, map[string]interface{}{"result": exists})
	return exists, err
}

// tryGet: velero object_store.go:413-423 (ObjectExists, then GetObject if it exists).
func (s *standin) tryGet(key string) ([]byte, bool, error) {
	exists, err := s.exists(key)
	if err != nil || !exists {
		return nil, false, err
	}
	var buf bytes.Buffer
	err = s.get(key, &buf)
	return buf.Bytes(), true, err
}

func (s *standin) listObjects(prefix string) ([]string, error) {
	res, err := s.store.ListObjects(context.Background(), &ListObjectsRequest{Plugin: s.plugin, Bucket: s.bucket, Prefix: prefix})
	var keys []string
	if err == nil {
		keys = res.Keys
	}
	s.record("ListObjects", prefix, err, map[string]interface{}{"result": nonNil(keys)})
	return keys, err
}

func (s *standin) listCommonPrefixes(prefix, delimiter string) ([]string, error) {
	res, err := s.store.ListCommonPrefixes(context.Background(), &ListCommonPrefixesRequest{Plugin: s.plugin, Bucket: s.bucket, Prefix: prefix, Delimiter: delimiter})
	var prefixes []string
	if err == nil {
		prefixes = res.Prefixes
	}
	s.record("ListCommonPrefixes", prefix, err, map[string]interface{}{"delimiter": delimiter, "result": nonNil(prefixes)})
	return prefixes, err
}

func (s *standin) deleteObject(key string) error {
	_, err := s.store.DeleteObject(context.Background(), &DeleteObjectRequest{Plugin: s.plugin, Bucket: s.bucket, Key: key})
	s.record("DeleteObject", key, err, nil)
	return err
}

func (s *standin) signedURL(key string, ttl time.Duration) (string, error) {
	res, err := s.store.CreateSignedURL(context.Background(), &CreateSignedURLRequest{Plugin: s.plugin, Bucket: s.bucket, Key: key, Ttl: int64(ttl)})
	url := ""
	if err == nil {
		url = res.Url
	}
	s.record("CreateSignedURL", key, err, map[string]interface{}{"result": url, "ttl_ns": int64(ttl)})
	return url, err
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// decodeGzipJSON is velero's decode (object_store.go:427-439): gzip, then one JSON value.
func decodeGzipJSON(data []byte) error {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer gz.Close()
	var v interface{}
	if err := json.NewDecoder(gz).Decode(&v); err != nil {
		return fmt.Errorf("error decoding object data: %w", err)
	}
	return nil
}

// decodeBackup stands for velero's GetBackupMetadata decode (object_store.go:328-339): JSON
// whose kind is Backup.
func decodeBackup(data []byte) (string, error) {
	var obj struct {
		Kind   string `json:"kind"`
		Status struct {
			Phase string `json:"phase"`
		} `json:"status"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return "", err
	}
	if obj.Kind != "Backup" {
		return "", fmt.Errorf("unexpected type for velero-backup.json: kind %q", obj.Kind)
	}
	return obj.Status.Phase, nil
}

// --- Velero's call sequences ---------------------------------------------------------------------

func readFile(dir, name string, required bool) []byte {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		if !required && errors.Is(err, os.ErrNotExist) {
			return nil // velero's seekAndPutObject skips a nil reader (object_store.go:696-699)
		}
		usage("%v", err)
	}
	return data
}

// putBackup: the backup controller's existence check (backup_controller.go:750-758), then
// PutBackup (object_store.go:269-312).
func (s *standin) putBackup(name, dir string) {
	metadata := readFile(dir, "velero-backup.json", true)
	contents := readFile(dir, name+".tar.gz", true)
	logs := readFile(dir, name+"-logs.gz", false)
	metaKey := s.backupKey(name, "velero-backup.json")
	contentsKey := s.backupKey(name, name+".tar.gz")

	exists, err := s.exists(metaKey)
	if err != nil {
		veleroLog("error", "error checking if backup already exists in object storage", err, "backup", name)
		return
	}
	if exists {
		veleroLog("error", "backup already exists in object storage", nil, "backup", name)
		s.failed = true
		return
	}
	if logs != nil {
		if err := s.put(s.backupKey(name, name+"-logs.gz"), logs); err != nil {
			// best effort: object_store.go:270-274
			veleroLog("error", "Error uploading log file", err, "backup", name)
		}
	}
	if err := s.put(metaKey, metadata); err != nil {
		veleroLog("error", "Error uploading backup", err, "backup", name) // a hard stop: :276-279
		return
	}
	if err := s.put(contentsKey, contents); err != nil {
		veleroLog("error", "Error uploading backup", err, "backup", name)
		_ = s.deleteObject(metaKey) // :281-284
		return
	}
	// A Go map: ranged in a random order (object_store.go:288-297).
	side := map[string][]byte{}
	for _, suffix := range sideFiles {
		if data := readFile(dir, name+suffix, false); data != nil {
			side[s.backupKey(name, name+suffix)] = data
		}
	}
	keys := make([]string, 0, len(side))
	for k := range side {
		keys = append(keys, k)
	}
	rand.Seed(time.Now().UnixNano())
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, key := range keys {
		if err := s.put(key, side[key]); err != nil {
			veleroLog("error", "Error uploading backup", err, "backup", name)
			_ = s.deleteObject(contentsKey) // :299-307
			_ = s.deleteObject(metaKey)
			return
		}
	}
}

// operations: while async operations run, the operations controller rewrites velero-backup.json
// and the item operations (backup_operations_controller.go:254-268; uploadProgress ->
// PutBackupItemOperations, object_store.go:624-626).
func (s *standin) operations(name, dir string) {
	if err := s.put(s.backupKey(name, "velero-backup.json"), readFile(dir, "velero-backup.json", true)); err != nil {
		veleroLog("error", "error uploading backup json", err, "backup", name)
		return
	}
	ops := readFile(dir, name+"-itemoperations.json.gz", true)
	if err := s.put(s.backupKey(name, name+"-itemoperations.json.gz"), ops); err != nil {
		veleroLog("error", "error uploading item operations", err, "backup", name)
	}
}

// finalize: backup_finalizer_controller.go:153-236. With async operations, the tarball is
// downloaded (:169, downloadToTempFile), rebuilt, the volume infos read and rewritten
// (pkg/backup/backup.go:1168, 1342); then velero-backup.json with the terminal phase is PUT
// (:226) and only AFTER it the new tarball (:230-234).
func (s *standin) finalize(name, dir string, async bool) {
	data, found, err := s.tryGet(s.backupKey(name, name+"-itemoperations.json.gz"))
	if err == nil && found {
		err = decodeGzipJSON(data)
	}
	if err != nil {
		veleroLog("error", "Error getting backup item operations", err, "backup", name)
		return
	}
	var newContents []byte
	if async {
		if err := s.get(s.backupKey(name, name+".tar.gz"), io.Discard); err != nil {
			veleroLog("error", "error downloading backup", err, "backup", name)
			return
		}
		newContents = readFile(dir, name+".tar.gz", true)
		data, found, err := s.tryGet(s.backupKey(name, name+"-volumeinfo.json.gz"))
		if err == nil && found {
			err = decodeGzipJSON(data)
		}
		if err != nil {
			veleroLog("error", "error finalizing Backup", err, "backup", name)
			return
		}
		if err := s.put(s.backupKey(name, name+"-volumeinfo.json.gz"), readFile(dir, name+"-volumeinfo.json.gz", true)); err != nil {
			veleroLog("error", "error finalizing Backup", err, "backup", name)
			return
		}
	}
	if err := s.put(s.backupKey(name, "velero-backup.json"), readFile(dir, "velero-backup.json", true)); err != nil {
		veleroLog("error", "error uploading backup json", err, "backup", name)
		return
	}
	if async {
		if err := s.put(s.backupKey(name, name+".tar.gz"), newContents); err != nil {
			veleroLog("error", "error uploading backup final contents", err, "backup", name)
		}
	}
}

// sync: backup_sync_controller.go:111-213. Every backup folder in the bucket (the real
// controller skips those already in the cluster; the stand-in has no cluster), its existence,
// its metadata and its pod volume backups; an error skips that backup (:151-164, 207-211).
func (s *standin) sync() {
	prefixes, err := s.listCommonPrefixes(s.backupsDir(), "/")
	if err != nil {
		veleroLog("error", "error listing backups in backup store", err)
		return
	}
	for _, p := range prefixes {
		name := strings.TrimSuffix(strings.TrimPrefix(p, s.backupsDir()), "/") // object_store.go:261
		metaKey := s.backupKey(name, "velero-backup.json")
		exist, err := s.exists(metaKey)
		if err != nil {
			veleroLog("error", "Error checking backup exist from backup store", err, "backup", name)
			continue
		}
		if !exist {
			continue
		}
		var buf bytes.Buffer
		err = s.get(metaKey, &buf)
		phase := ""
		if err == nil {
			phase, err = decodeBackup(buf.Bytes())
		}
		if err != nil {
			veleroLog("error", "Error getting backup metadata from backup store", err, "backup", name)
			continue
		}
		data, found, err := s.tryGet(s.backupKey(name, name+"-podvolumebackups.json.gz"))
		if err == nil && found {
			err = decodeGzipJSON(data)
		}
		if err != nil {
			// the Backup object is already created by then (:194): sync it, log the error
			veleroLog("error", "Error getting pod volume backups for this backup from backup store", err, "backup", name)
		}
		_ = s.out.Encode(map[string]interface{}{"sync": "create", "backup": name, "phase": phase})
	}
}

// restore: the tarball into a temp file before anything else (restore_controller.go:522-526,
// downloadToTempFile :834-867), then the side files (:542-556). Any failure: the restore is
// Failed and nothing reaches --out.
func (s *standin) restore(name, out string) {
	tmp, err := os.CreateTemp("", name)
	if err != nil {
		usage("%v", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := s.get(s.backupKey(name, name+".tar.gz"), tmp); err != nil {
		veleroLog("error", "restore Failed: error downloading backup", err, "backup", name)
		return
	}
	side := map[string][]byte{}
	for _, suffix := range []string{"-volumesnapshots.json.gz", "-csi-volumesnapshots.json.gz", "-volumeinfo.json.gz"} {
		data, found, err := s.tryGet(s.backupKey(name, name+suffix))
		if err == nil && found {
			err = decodeGzipJSON(data)
		}
		if err != nil {
			veleroLog("error", "restore Failed: error fetching "+strings.TrimPrefix(suffix, "-")+" metadata", err, "backup", name)
			return
		}
		if found {
			side[name+suffix] = data
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		usage("%v", err)
	}
	if _, err := tmp.Seek(0, 0); err != nil {
		usage("%v", err)
	}
	data, err := io.ReadAll(tmp)
	if err != nil {
		usage("%v", err)
	}
	side[name+".tar.gz"] = data
	for file, data := range side {
		if err := os.WriteFile(filepath.Join(out, file), data, 0o644); err != nil {
			usage("%v", err)
		}
	}
	_ = s.out.Encode(map[string]interface{}{"restore": "Completed", "backup": name})
}

// deleteBackup: backup_deletion_controller.go:263-366 (velero-io/velero d2241adb). The tarball
// (when delete item actions are installed, :265-267) and the volume snapshots (:305-307) are
// read; a tarball that does not exist lets deletion go on (isTarballNotFoundError, :275-280,
// :714-730), any other error is recorded, and with an error recorded the backup's objects are
// NOT removed (:355-370, "Skipping removal of backup from backup storage due to previous
// errors"); otherwise every object under the backup's folder is deleted (DeleteBackup,
// object_store.go:566-583).
func (s *standin) deleteBackup(name string) {
	var errs []string
	if err := s.get(s.backupKey(name, name+".tar.gz"), io.Discard); err != nil {
		veleroLog("error", "Unable to download tarball for backup, skipping associated DeleteItemAction plugins", err, "backup", name)
		if !isTarballNotFoundError(err) {
			errs = append(errs, "error downloading backup tarball, CSI snapshot cleanup was skipped")
		}
	}
	data, found, err := s.tryGet(s.backupKey(name, name+"-volumesnapshots.json.gz"))
	if err == nil && found {
		err = decodeGzipJSON(data)
	}
	if err != nil {
		veleroLog("error", "error getting backup's volume snapshots", err, "backup", name)
		errs = append(errs, "error getting backup's volume snapshots")
	}
	if len(errs) > 0 {
		veleroLog("info", "Skipping removal of backup from backup storage due to previous errors", nil, "backup", name)
		s.failed = true
		return
	}
	keys, err := s.listObjects(s.backupDir(name))
	if err != nil {
		veleroLog("error", "error deleting backup from backup storage", err, "backup", name)
		return
	}
	for _, key := range keys {
		if err := s.deleteObject(key); err != nil {
			veleroLog("error", "error deleting backup from backup storage", err, "backup", name, "key", key)
		}
	}
}

// isTarballNotFoundError: backup_deletion_controller.go:714-730, the same words.
func isTarballNotFoundError(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "not found") || strings.Contains(msg, "does not exist") ||
		strings.Contains(msg, "nosuchkey") || strings.Contains(msg, "blobnotfound") ||
		strings.Contains(msg, "objectnotexist")
}

// --- main -----------------------------------------------------------------------------------------

func usage(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "velerostandin: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	var pluginArgs, configs multiFlag
	cmdPath := flag.String("plugin", "", "the plugin executable")
	name := flag.String("name", "merkle-backup.io/aws", "the BSL's provider (plugin name)")
	bucket := flag.String("bucket", "", "the BSL's bucket")
	prefix := flag.String("prefix", "", "the BSL's prefix")
	logLevel := flag.String("log-level", "info", "Velero's --log-level (also passed to the plugin)")
	requestName := flag.String("request-name", "", "tests: the plugin name put in requests (default: --name)")
	skipInit := flag.Bool("skip-init", false, "tests: call the ObjectStore without Init")
	killAfter := flag.Int64("kill-plugin-after", -1, "tests: SIGKILL the plugin once this many body bytes have passed (PutObject sent / GetObject received)")
	flag.Var(&pluginArgs, "plugin-arg", "an argument for the plugin, before Velero's own (repeated)")
	flag.Var(&configs, "config", "a BSL config entry k=v (repeated)")
	flag.Parse()
	if *cmdPath == "" || flag.NArg() < 1 {
		usage("usage: velerostandin --plugin PATH [--bucket B --prefix P --config k=v ...] COMMAND [ARGS]")
	}
	command, rest := flag.Arg(0), flag.Args()[1:]
	positional := ""
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		positional, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	dir := fs.String("dir", "", "the backup's files")
	outDir := fs.String("out", "", "where to write")
	file := fs.String("file", "", "a file to upload")
	async := fs.Bool("async", false, "the backup had async operations")
	ttl := fs.Duration("ttl", downloadURLTTL, "the signed URL's lifetime")
	if err := fs.Parse(rest); err != nil {
		os.Exit(2)
	}
	needs := map[string][]string{"put-backup": {"NAME", "dir"}, "operations": {"NAME", "dir"},
		"finalize": {"NAME", "dir"}, "sync": {}, "restore": {"NAME", "out"}, "delete": {"NAME"},
		"exists": {"KEY"}, "get": {"KEY", "out"}, "put": {"KEY", "file"}, "list": {"PREFIX"},
		"prefixes": {"PREFIX"}, "url": {"KEY"}, "ping": {}}
	required, known := needs[command]
	if !known {
		usage("unknown command %q", command)
	}
	for _, r := range required {
		switch {
		case r == "dir" && *dir == "", r == "out" && *outDir == "", r == "file" && *file == "":
			usage("%s needs --%s", command, r)
		case strings.ToUpper(r) == r && positional == "":
			usage("%s needs %s", command, r)
		}
	}
	config := map[string]string{}
	for _, kv := range configs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			usage("--config %q: not k=v", kv)
		}
		config[k] = v
	}
	// velero pkg/persistence/object_store.go:145-171: bucket and prefix trimmed of slashes and
	// added to the plugin's config.
	b, p := strings.Trim(*bucket, "/"), strings.Trim(*prefix, "/")
	config["bucket"], config["prefix"] = b, p
	layoutPrefix := p
	if layoutPrefix != "" {
		layoutPrefix += "/"
	}

	s := &standin{plugin: *name, bucket: b, prefix: layoutPrefix, out: json.NewEncoder(os.Stdout)}
	opts := runOptions{requestName: *requestName, skipInit: *skipInit}
	s.killAfter = *killAfter
	code := run(s, *cmdPath, append(pluginArgs, "--log-level", *logLevel), *logLevel, config, opts, func() {
		switch command {
		case "put-backup":
			s.putBackup(positional, *dir)
		case "operations":
			s.operations(positional, *dir)
		case "finalize":
			s.finalize(positional, *dir, *async)
		case "sync":
			s.sync()
		case "restore":
			s.restore(positional, *outDir)
		case "delete":
			s.deleteBackup(positional)
		case "exists":
			_, _ = s.exists(positional)
		case "get":
			var buf bytes.Buffer
			if s.get(positional, &buf) == nil {
				if err := os.WriteFile(*outDir, buf.Bytes(), 0o644); err != nil {
					usage("%v", err)
				}
			}
		case "put":
			_ = s.put(positional, readFile(filepath.Dir(*file), filepath.Base(*file), true))
		case "list":
			_, _ = s.listObjects(positional)
		case "prefixes":
			delimiter := "/"
			if fs.NArg() > 0 {
				delimiter = fs.Arg(0)
			}
			_, _ = s.listCommonPrefixes(positional, delimiter)
		case "url":
			_, _ = s.signedURL(positional, *ttl)
		case "ping":
			// go-plugin's Ping: grpc.health.v1 Check of service "plugin" (grpc_client.go:127-133).
			err := s.ping()
			s.record("Health/Check", "plugin", err, nil)
		}
	})
	os.Exit(code)
}

// run starts the plugin as velero's plugin manager does and runs body against its ObjectStore.
type runOptions struct {
	requestName string // the plugin name in requests, when it differs from the one looked up
	skipInit    bool
}

func run(s *standin, cmdPath string, args []string, logLevel string, config map[string]string, opts runOptions, body func()) int {
	// The go-plugin client's logger stands for velero's logrusAdapter (clientmgmt/process/
	// logrus_adapter.go): the plugin's stderr lines, parsed by go-plugin, land in Velero's log.
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "velero", Output: os.Stderr, Level: level})
	// velero clientmgmt/process/client_builder.go:66-83 and framework/handshake.go:22-31.
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  2,
			MagicCookieKey:   "VELERO_PLUGIN",
			MagicCookieValue: "hello",
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Plugins: map[string]plugin.Plugin{
			"ObjectStore":  objectStorePlugin{},
			"PluginLister": pluginListerPlugin{},
		},
		Logger: logger,
		Cmd:    exec.Command(cmdPath, args...),
	})
	start := time.Now()
	protocolClient, err := client.Client()
	if err != nil {
		client.Kill()
		veleroLog("error", "error starting plugin", err, "cmd", cmdPath)
		_ = s.out.Encode(map[string]interface{}{"method": "Start", "ok": false, "error": err.Error()})
		return 1
	}
	_ = s.out.Encode(map[string]interface{}{"method": "Start", "ok": true, "ms": time.Since(start).Milliseconds()})
	// go-plugin v1.7.0 grpc_client.go:75-80 opens the stdio stream right after connecting;
	// 1.0.1 does not, so the stand-in does (and discards it, as velero sets no SyncStdout).
	if gc, ok := protocolClient.(*plugin.GRPCClient); ok {
		if stdio, err := NewGRPCStdioClient(gc.Conn).StreamStdio(context.Background(), &emptypb.Empty{}); err == nil {
			go func() {
				for {
					if _, err := stdio.Recv(); err != nil {
						return
					}
				}
			}()
		}
	}
	s.ping = protocolClient.Ping
	if rc := client.ReattachConfig(); rc != nil {
		s.killPID = rc.Pid
	}
	code := func() int {
		// registry.go:189-208 and plugin_lister.go:84-103: ListPlugins, every kind checked.
		raw, err := protocolClient.Dispense("PluginLister")
		if err != nil {
			veleroLog("error", "error dispensing PluginLister", err)
			return 1
		}
		listed, err := raw.(PluginListerClient).ListPlugins(context.Background(), &Empty{})
		found := false
		var ids []map[string]string
		if err == nil {
			for _, id := range listed.Plugins {
				// velero re-runs the listed command for each operation (registry.go:210-223,
				// restartable_process.go:107-112): it must be the path velero executed.
				ids = append(ids, map[string]string{"command": id.Command, "kind": id.Kind, "name": id.Name, "command_is_executed_path": fmt.Sprint(id.Command == cmdPath)})
				if id.Kind == "ObjectStore" && id.Name == s.plugin {
					found = true
				}
			}
		}
		_ = s.out.Encode(map[string]interface{}{"method": "ListPlugins", "ok": err == nil, "result": ids})
		if err != nil {
			veleroLog("error", "error listing plugins", err, "cmd", cmdPath)
			return 1
		}
		if !found {
			// registry.go:121-126: "unable to locate ObjectStore plugin named ..."
			veleroLog("error", "unable to locate ObjectStore plugin named "+s.plugin, nil)
			return 1
		}
		raw, err = protocolClient.Dispense("ObjectStore")
		if err != nil {
			veleroLog("error", "error dispensing ObjectStore", err)
			return 1
		}
		s.store = raw.(ObjectStoreClient)
		if opts.requestName != "" {
			s.plugin = opts.requestName
		}
		if opts.skipInit {
			body()
			if s.failed {
				return 1
			}
			return 0
		}
		// object_store.go:203: Init with the BSL's config.
		initStart := time.Now()
		_, err = s.store.Init(context.Background(), &ObjectStoreInitRequest{Plugin: s.plugin, Config: config})
		initMs := time.Since(initStart).Milliseconds()
		keys := make([]string, 0, len(config))
		for k := range config {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s.record("Init", "", err, map[string]interface{}{"config_keys": keys, "ms": initMs})
		if err != nil {
			veleroLog("error", "error initializing object store", err)
			return 1
		}
		body()
		if s.failed {
			return 1
		}
		return 0
	}()
	// clientmgmt/process/process.go:124-126 -> go-plugin Kill: Shutdown, 2 s grace, then a kill.
	killStart := time.Now()
	client.Kill()
	elapsed := time.Since(killStart)
	_ = s.out.Encode(map[string]interface{}{"method": "Shutdown", "ok": true, "ms": elapsed.Milliseconds(), "graceful": elapsed < 1900*time.Millisecond})
	return code
}
