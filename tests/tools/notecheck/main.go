// notecheck: opens a C2SP signed note with Go's golang.org/x/mod/sumdb/note, the independent
// reader of what merkle-backup's signers produce (tests/signers/test_go_note.py).
//
//	notecheck NOTE VKEY...
//
// NOTE is a file holding a signed note (a seal's checkpoint and one signature line per key,
// docs/format.md §6 compatibility note); each VKEY is a verifier key name+hash+base64. The
// note must open (note.Open: at least one known signature, every known one valid). Prints one
// JSON line: the text and the name+hash of every verified signature, in the note's order.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: notecheck NOTE VKEY...")
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var verifiers []note.Verifier
	for _, vkey := range os.Args[2:] {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad vkey:", err)
			os.Exit(2)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "note does not verify:", err)
		os.Exit(1)
	}
	var names []string
	for _, s := range n.Sigs {
		names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	out, _ := json.Marshal(map[string]interface{}{"text": n.Text, "verified": names})
	fmt.Println(string(out))
}
