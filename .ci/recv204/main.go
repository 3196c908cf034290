// Command recv204 is the HTTP receiver of .ci/realrate.py's max-rate runs: a
// Go server on loopback that answers every POST with 204 once it has read
// the body, counts the records it received (one per body, or one per line
// of an NDJSON body) and reports the count on GET /count. It prints its URL
// on the first line of stdout and serves until stdin closes.
//
// A Python receiver would be the bottleneck at a few thousand requests a
// second, and one inside serialcbd would charge its CPU to the daemon.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "recv204:", err)
		os.Exit(1)
	}
	var records atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, records.Load())
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := 1
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-ndjson") {
			n = bytes.Count(body, []byte{'\n'})
		}
		records.Add(int64(n))
		w.WriteHeader(http.StatusNoContent)
	})
	go func() { _ = http.Serve(ln, mux) }()
	fmt.Printf("http://%s/ingest\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
}
