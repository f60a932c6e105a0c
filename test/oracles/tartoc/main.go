// Command tartoc is the test oracle for src/indexer/tar: it reads a tar stream (optionally gzip) from the
// files named by its arguments (one JSON line per file), or stdin, with Go's archive/tar exactly as soci's TOC builder does, and
// prints one JSON document: every entry's FileMetadata fields and the uncompressed archive size (the
// number of bytes read from the uncompressed stream when Next() returned io.EOF), or the error that
// stopped it. Stdlib only. int64 values are printed as strings so that no precision is lost in JS.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"unicode/utf8"
)

// counter counts the bytes read through it. It deliberately has no Seek method, so that tar.Reader
// reads (and counts) every byte it skips.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type entry struct {
	Name     string      `json:"name"`
	Type     string      `json:"type"`
	Offset   int64       `json:"offset,string"`
	Size     int64       `json:"size,string"`
	Linkname string      `json:"linkname"`
	Mode     int64       `json:"mode,string"`
	UID      uint32      `json:"uid"`
	GID      uint32      `json:"gid"`
	Uname    string      `json:"uname"`
	Gname    string      `json:"gname"`
	ModTime  string      `json:"mod_time"`
	Devmajor int64       `json:"devmajor,string"`
	Devminor int64       `json:"devminor,string"`
	Xattrs   [][2]string `json:"xattrs"`
	NonUTF8  bool        `json:"non_utf8,omitempty"`
}

type result struct {
	Entries     []entry `json:"entries"`
	ArchiveSize *int64  `json:"archive_size,omitempty,string"`
	Error       string  `json:"error,omitempty"`
	ErrorKind   string  `json:"error_kind,omitempty"`
}

func entryType(t byte) (string, bool) {
	switch t {
	case tar.TypeReg:
		return "reg", true
	case tar.TypeLink:
		return "hardlink", true
	case tar.TypeSymlink:
		return "symlink", true
	case tar.TypeChar:
		return "char", true
	case tar.TypeBlock:
		return "block", true
	case tar.TypeDir:
		return "dir", true
	case tar.TypeFifo:
		return "fifo", true
	}
	return "", false
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, tar.ErrHeader):
		return "header"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected_eof"
	case errors.Is(err, tar.ErrFieldTooLong):
		return "field_too_long"
	}
	return "other"
}

func run(in io.Reader) result {
	br := bufio.NewReader(in)
	var src io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return result{Entries: []entry{}, Error: err.Error(), ErrorKind: "gzip"}
		}
		src = zr
	}
	cr := &counter{r: src}
	tr := tar.NewReader(cr)
	res := result{Entries: []entry{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			n := cr.n
			res.ArchiveSize = &n
			return res
		}
		if err != nil {
			res.Error, res.ErrorKind = err.Error(), errorKind(err)
			return res
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			res.Error, res.ErrorKind = "pax global header", "pax_global"
			return res
		}
		typ, ok := entryType(hdr.Typeflag)
		if !ok {
			res.Error, res.ErrorKind = fmt.Sprintf("unsupported typeflag %q", hdr.Typeflag), "unsupported_type"
			return res
		}
		mt, _ := hdr.ModTime.UTC().MarshalText()
		e := entry{
			Name: hdr.Name, Type: typ, Offset: cr.n, Size: hdr.Size, Linkname: hdr.Linkname, Mode: hdr.Mode,
			UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), Uname: hdr.Uname, Gname: hdr.Gname, ModTime: string(mt),
			Devmajor: hdr.Devmajor, Devminor: hdr.Devminor, Xattrs: [][2]string{},
		}
		keys := make([]string, 0, len(hdr.PAXRecords))
		for k := range hdr.PAXRecords {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			e.Xattrs = append(e.Xattrs, [2]string{k, hdr.PAXRecords[k]})
		}
		strs := []string{e.Name, e.Linkname, e.Uname, e.Gname}
		for _, kv := range e.Xattrs {
			strs = append(strs, kv[0], kv[1])
		}
		for _, s := range strs {
			if !utf8.ValidString(s) {
				e.NonUTF8 = true
			}
		}
		res.Entries = append(res.Entries, e)
	}
}

func main() {
	if len(os.Args) < 2 {
		emit(run(os.Stdin))
		return
	}
	// Several files: one JSON line each, in order.
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		emit(run(f))
		f.Close()
	}
}

func emit(r result) {
	out, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Stdout.Write(append(out, '\n'))
}
