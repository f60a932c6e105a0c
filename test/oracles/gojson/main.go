// Command gojson is the test oracle for src/oci/go-json.ts: it decodes image-spec documents with Go's
// encoding/json into structs that mirror opencontainers/image-spec v1.1.1 (specs-go/v1/{descriptor,
// manifest,index}.go: same field order, same json tags, same omitempty) and marshals them again, which
// is what soci-snapshotter does to a SOCI index and what `soci convert` does to manifests and indexes.
// Stdlib only, so it builds offline.
//
// Protocol: one request per stdin line, "<manifest|index|descriptor> <base64 document>"; one reply per
// line on stdout, "OK <base64 re-marshalled bytes>" or "ERR <message>".
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type Platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
}

type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Data         []byte            `json:"data,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
}

// Versioned mirrors image-spec's specs.Versioned, embedded first in Manifest and Index.
type Versioned struct {
	SchemaVersion int `json:"schemaVersion"`
}

type Manifest struct {
	Versioned
	MediaType    string            `json:"mediaType,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Config       Descriptor        `json:"config"`
	Layers       []Descriptor      `json:"layers"`
	Subject      *Descriptor       `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type Index struct {
	Versioned
	MediaType    string            `json:"mediaType,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Manifests    []Descriptor      `json:"manifests"`
	Subject      *Descriptor       `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func remarshal(kind string, doc []byte) ([]byte, error) {
	var v interface{}
	switch kind {
	case "manifest":
		v = &Manifest{}
	case "index":
		v = &Index{}
	case "descriptor":
		v = &Descriptor{}
	default:
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	if err := json.Unmarshal(doc, v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		kind, b64, _ := strings.Cut(in.Text(), " ")
		doc, err := base64.StdEncoding.DecodeString(b64)
		var res []byte
		if err == nil {
			res, err = remarshal(kind, doc)
		}
		if err != nil {
			fmt.Fprintf(out, "ERR %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Fprintf(out, "OK %s\n", base64.StdEncoding.EncodeToString(res))
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
