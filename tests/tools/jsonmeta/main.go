// jsonmeta: Go's view of a manifest's metadata, for the differential test of consistency.py.
//
// Velero's restore decodes each item with encoding/json into a map (unstructured.Unstructured)
// and reads metadata.name and metadata.namespace with NestedString: "" unless metadata is an
// object and the member is a string. Each stdin line is one manifest in base64; each stdout
// line is {"err": "<Go's error or empty>", "name": "...", "namespace": "..."}.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"os"
)

type view struct {
	Err       string `json:"err"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

func nestedString(obj map[string]interface{}, field string) string {
	metadata, ok := obj["metadata"].(map[string]interface{})
	if !ok {
		return ""
	}
	s, _ := metadata[field].(string)
	return s
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		data, err := base64.StdEncoding.DecodeString(in.Text())
		if err != nil {
			panic(err)
		}
		var v view
		var obj map[string]interface{}
		if err := json.Unmarshal(data, &obj); err != nil {
			v.Err = err.Error()
		} else if obj == nil {
			v.Err = "null is not an object"
		} else {
			v.Name = nestedString(obj, "name")
			v.Namespace = nestedString(obj, "namespace")
		}
		if err := out.Encode(v); err != nil {
			panic(err)
		}
	}
}
