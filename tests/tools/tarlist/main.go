// tarlist lists the entries of .tar.gz files exactly as Velero's restore reads them
// (pkg/archive/extractor.go): gzip.NewReader (multistream, the default), tar.NewReader, then
// tr.Next() until io.EOF, reading the data of regular files (TypeReg) only.
//
// For each file it prints one JSON line per entry and then one end line:
//
//	{"name":"<base64 of the raw name>","type":48,"size":12,"sha256":"<hex of the data>"}
//	{"end":true,"entries":1,"err":""}
//
// "size" and "sha256" are present for regular files only (the bytes a restore would write);
// "err" is Go's error, empty when Go read the archive to its end-of-archive marker. Like
// Velero, nothing after that marker is read: not the rest of the gzip stream, not its trailer.
//
// Usage: tarlist FILE...      or      tarlist -stdin   (one path per line on stdin, each
// answered and flushed before the next is read, so one process serves a whole test session).
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
)

type entry struct {
	Name   []byte `json:"name"`
	Type   int    `json:"type"`
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

type end struct {
	End     bool   `json:"end"`
	Entries int    `json:"entries"`
	Err     string `json:"err"`
}

func list(path string, enc *json.Encoder) error {
	n := 0
	finish := func(err error) error {
		e := end{End: true, Entries: n}
		if err != nil {
			e.Err = err.Error()
		}
		return enc.Encode(e)
	}
	f, err := os.Open(path)
	if err != nil {
		return finish(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return finish(err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return finish(nil)
		}
		if err != nil {
			return finish(err)
		}
		e := entry{Name: []byte(h.Name), Type: int(h.Typeflag)}
		var readErr error
		if h.Typeflag == tar.TypeReg {
			sum := sha256.New()
			size, err := io.Copy(sum, tr)
			e.Size = &size
			e.SHA256 = hex.EncodeToString(sum.Sum(nil))
			readErr = err
		}
		if readErr != nil {
			return finish(readErr)
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
		n++
	}
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	paths := os.Args[1:]
	if len(paths) == 1 && paths[0] == "-stdin" {
		in := bufio.NewScanner(os.Stdin)
		in.Buffer(make([]byte, 1<<16), 1<<20)
		for in.Scan() {
			if err := list(in.Text(), enc); err != nil {
				os.Exit(1)
			}
			if err := out.Flush(); err != nil {
				os.Exit(1)
			}
		}
		return
	}
	for _, p := range paths {
		if err := list(p, enc); err != nil {
			os.Exit(1)
		}
	}
}
