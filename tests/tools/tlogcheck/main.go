// tlogcheck: reads a merkle-backup log folder (C2SP tlog-tiles) with Go's
// golang.org/x/mod/sumdb/tlog and note, and checks what Python wrote.
//
//	tlogcheck LOGDIR VKEY [PROOFS.json]
//	tlogcheck -note NOTE VKEY PROOFS.json
//
// It opens LOGDIR/checkpoint with note.Open (VKEY: name+hash+base64 key), parses the
// tlog-checkpoint body, recomputes the tree hash from the tiles (tlog.TileHashReader checks
// every tile it reads against the signed tree), checks every entry's record hash, and proves
// and checks inclusion of every entry and consistency from every older size. PROOFS.json
// (optional) holds proofs made by Python: {"inclusion":[{"index","size","root","proof"}],
// "consistency":[{"old","old_root","size","root","proof"}]} with base64 hashes; each must pass
// tlog.CheckRecord / tlog.CheckTree. Prints one JSON line.
//
// With -note (a proof file's embedded log part, docs/format.md §11.6): NOTE is the signed log
// checkpoint alone (no tiles); it must open with VKEY, and every inclusion proof of PROOFS.json
// (each "leaf" the record hash of the embedded entry, "size"/"root" the note's) must pass
// tlog.CheckRecord against the tree the note signs.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return 8 }

// C2SP path: tile/<L>/<N>[.p/<W>] (no height element, unlike sumdb's tile/8/L/N).
func c2spPath(t tlog.Tile) string {
	p := t.Path() // tile/8/L/N[.p/W]
	return strings.Replace(p, "tile/8/", "tile/", 1)
}

func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := os.ReadFile(filepath.Join(d.dir, c2spPath(t)))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func hashOf(s string) tlog.Hash {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		fail("bad hash %q", s)
	}
	copy(h[:], b)
	return h
}

func hashes(ss []string) []tlog.Hash {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		out[i] = hashOf(s)
	}
	return out
}

type proofs struct {
	Inclusion []struct {
		Index int64    `json:"index"`
		Size  int64    `json:"size"`
		Root  string   `json:"root"`
		Leaf  string   `json:"leaf"`
		Proof []string `json:"proof"`
	} `json:"inclusion"`
	Consistency []struct {
		Old     int64    `json:"old"`
		OldRoot string   `json:"old_root"`
		Size    int64    `json:"size"`
		Root    string   `json:"root"`
		Proof   []string `json:"proof"`
	} `json:"consistency"`
}

// openCheckpoint opens a signed tlog-checkpoint note with vkey: its tree.
func openCheckpoint(msg []byte, verifier note.Verifier) tlog.Tree {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[0] != verifier.Name() {
		fail("checkpoint body %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("size: %v", err)
	}
	return tlog.Tree{N: size, Hash: hashOf(lines[2])}
}

func checkEmbedded(notePath, vkey, proofsPath string) {
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("verifier: %v", err)
	}
	msg, err := os.ReadFile(notePath)
	if err != nil {
		fail("note: %v", err)
	}
	tree := openCheckpoint(msg, verifier)
	raw, err := os.ReadFile(proofsPath)
	if err != nil {
		fail("proofs: %v", err)
	}
	var ps proofs
	if err := json.Unmarshal(raw, &ps); err != nil {
		fail("proofs: %v", err)
	}
	for _, p := range ps.Inclusion {
		if p.Size != tree.N || hashOf(p.Root) != tree.Hash {
			fail("inclusion proof for another tree than the note's")
		}
		if err := tlog.CheckRecord(hashes(p.Proof), tree.N, tree.Hash, p.Index, hashOf(p.Leaf)); err != nil {
			fail("check record %d: %v", p.Index, err)
		}
	}
	fmt.Printf("{\"size\":%d,\"checked\":%d}\n", tree.N, len(ps.Inclusion))
}

func main() {
	if len(os.Args) == 5 && os.Args[1] == "-note" {
		checkEmbedded(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	dir, vkey := os.Args[1], os.Args[2]
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("verifier: %v", err)
	}
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	tree := openCheckpoint(msg, verifier)
	size := tree.N
	hr := tlog.TileHashReader(tree, dirTiles{dir})
	th, err := tlog.TreeHash(size, hr)
	if err != nil || th != tree.Hash {
		fail("tree hash: %v", err)
	}
	// Every entry: its record hash is the leaf the tiles hold, and its inclusion proves.
	var i int64
	for t := int64(0); t*256 < size; t++ {
		w := size - t*256
		if w > 256 {
			w = 256
		}
		tile := tlog.Tile{H: 8, L: 0, N: t, W: int(w)}
		p := strings.Replace(c2spPath(tile), "tile/0/", "tile/entries/", 1)
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			fail("bundle: %v", err)
		}
		for len(b) > 0 {
			l := int(binary.BigEndian.Uint16(b))
			rec := b[2 : 2+l]
			b = b[2+l:]
			leaf := tlog.RecordHash(rec)
			stored, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
			if err != nil || stored[0] != leaf {
				fail("record %d hash: %v", i, err)
			}
			rp, err := tlog.ProveRecord(size, i, hr)
			if err != nil {
				fail("prove record %d: %v", i, err)
			}
			if err := tlog.CheckRecord(rp, size, tree.Hash, i, leaf); err != nil {
				fail("check record %d: %v", i, err)
			}
			i++
		}
	}
	if i != size {
		fail("bundles hold %d entries, checkpoint says %d", i, size)
	}
	checkedTrees := 0
	for old := int64(1); old < size; old = old*2 + 1 {
		oldHash, err := tlog.TreeHash(old, hr)
		if err != nil {
			fail("tree hash %d: %v", old, err)
		}
		tp, err := tlog.ProveTree(size, old, hr)
		if err != nil {
			fail("prove tree: %v", err)
		}
		if err := tlog.CheckTree(tp, size, tree.Hash, old, oldHash); err != nil {
			fail("check tree %d: %v", old, err)
		}
		checkedTrees++
	}
	ours := 0
	if len(os.Args) > 3 {
		var ps proofs
		b, _ := os.ReadFile(os.Args[3])
		if err := json.Unmarshal(b, &ps); err != nil {
			fail("proofs: %v", err)
		}
		for _, p := range ps.Inclusion {
			if err := tlog.CheckRecord(tlog.RecordProof(hashes(p.Proof)), p.Size, hashOf(p.Root), p.Index, hashOf(p.Leaf)); err != nil {
				fail("our inclusion proof %d/%d: %v", p.Index, p.Size, err)
			}
			ours++
		}
		for _, p := range ps.Consistency {
			if err := tlog.CheckTree(tlog.TreeProof(hashes(p.Proof)), p.Size, hashOf(p.Root), p.Old, hashOf(p.OldRoot)); err != nil {
				fail("our consistency proof %d->%d: %v", p.Old, p.Size, err)
			}
			ours++
		}
	}
	out, _ := json.Marshal(map[string]interface{}{"size": size, "entries": i, "trees": checkedTrees, "ours": ours, "origin": verifier.Name()})
	fmt.Println(string(out))
}
