package wire_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/geocdn/geocdn/internal/wire"
)

// A fill response is followed on its stream by the raw content, which
// ReadFrame leaves for the caller to read.
func ExampleReadFrame() {
	var stream bytes.Buffer
	content := []byte("body{}")
	resp := wire.FillResponse{
		Status: wire.FillOK,
		Entry: wire.LogEntry{
			LSN: 7, Op: wire.OpPut, Namespace: "default", Key: "site.css",
			Size: uint64(len(content)), ContentType: "text/css",
		},
	}
	if err := wire.WriteFrame(&stream, resp); err != nil {
		panic(err)
	}
	stream.Write(content)

	f, err := wire.ReadFrame(&stream)
	if err != nil {
		panic(err)
	}
	switch f := f.(type) {
	case wire.FillResponse:
		body := make([]byte, f.Entry.Size)
		if _, err := io.ReadFull(&stream, body); err != nil {
			panic(err)
		}
		fmt.Printf("%s %s %s: %s\n", f.Status, f.Entry.Key, f.Entry.ContentType, body)
	}
	// Output: ok site.css text/css: body{}
}
