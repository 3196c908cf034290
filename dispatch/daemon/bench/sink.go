package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/httpsink"
)

// benchSink resolves --sink into the sink entry, a label for the report and
// a cleanup.
func resolveSink(spec string) (sink configs.Sink, label string, cleanup func(), err error) {
	sink.Name = "sink"
	switch spec {
	case "":
		dir, err := os.MkdirTemp("", "serialcbd-bench-")
		if err != nil {
			return sink, "", nil, err
		}
		sink.URL = "sqlite:" + filepath.Join(dir, "bench.db")
		return sink, "sqlite (temporary)", func() { _ = os.RemoveAll(dir) }, nil
	case "http", "http-ndjson":
		ndjson := spec == "http-ndjson"
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return sink, "", nil, err
		}
		srv := &http.Server{Handler: receiver(ndjson), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		sink.URL = "http://" + ln.Addr().String() + "/ingest"
		label = "http (in-process receiver, 204)"
		if ndjson {
			// The entry a config file would give as  http: {format: ndjson}
			sink.HTTP = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: "format"},
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: httpsink.FormatNDJSON},
			}}
			label = "http-ndjson (in-process receiver counting lines, 204)"
		}
		return sink, label, func() { _ = srv.Close() }, nil
	}
	sink.URL = spec
	return sink, spec, func() {}, nil
}

// benchReceiver answers every POST with 204 once it has read the body. An
// NDJSON receiver counts the body's lines and answers 400 when they are not
// the X-Serialcbd-Frames the request announces (a malformed batch shows up
// as failed frames).
func receiver(ndjson bool) http.Handler {
	// Copy buffers are pooled: io.Copy into a plain Writer would allocate
	// 32 KiB per request, charged to the pipeline's allocations.
	bufs := sync.Pool{New: func() any { return new([16 << 10]byte) }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ndjson {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var lines lineCounter
		buf := bufs.Get().(*[16 << 10]byte)
		_, err := io.CopyBuffer(&lines, r.Body, buf[:])
		bufs.Put(buf)
		want, herr := strconv.Atoi(r.Header.Get(httpsink.FramesHeader))
		if err != nil || herr != nil || int(lines) != want {
			http.Error(w, fmt.Sprintf("%d lines, %s %q", lines, httpsink.FramesHeader, r.Header.Get(httpsink.FramesHeader)), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// lineCounter is an io.Writer that counts newlines.
type lineCounter int

func (c *lineCounter) Write(p []byte) (int, error) {
	*c += lineCounter(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}
