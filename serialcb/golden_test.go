package serialcb

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current output")

// goldenDir holds recorded streams shared by the whole repository.
const goldenDir = "../testdata/framing/lines"

// goldenCases says how each input file is framed; every .bin file in
// goldenDir must be listed, so a new recording cannot be silently ignored.
var goldenCases = map[string]struct {
	spec string
	max  int
}{
	"nmea_crlf.bin":     {"lines", 1024},
	"binary.bin":        {"lines", 1024},
	"oversize.bin":      {"lines", 32},
	"etx.bin":           {`lines:\x03`, 16},
	"crlf_explicit.bin": {`lines:\r\n`, 64},
	"include.bin":       {`lines:\r\n:include`, 64},
}

// transcript renders what a Cutter produced, one event per line: a frame as
// a Go-quoted string, "oversize N" for a skipped frame, and at the end
// "pending <quoted>" or "dropping N" for what is still held.
func transcript(f Framer, maxFrame int, chunks [][]byte) string {
	var b strings.Builder
	c := NewCutter(f, maxFrame)
	for _, p := range chunks {
		c.Feed(p,
			func(frame []byte) { b.WriteString(strconv.Quote(string(frame)) + "\n") },
			func(n int) { fmt.Fprintf(&b, "oversize %d\n", n) })
	}
	if p := c.Pending(); p != nil {
		fmt.Fprintf(&b, "pending %q\n", p)
	}
	if n := c.Dropping(); n > 0 {
		fmt.Fprintf(&b, "dropping %d\n", n)
	}
	return b.String()
}

// TestGoldenLines feeds every recorded stream whole, split in two at every
// byte boundary, and one byte at a time: the frames must not depend on how
// reads happen to cut the stream.
func TestGoldenLines(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(goldenDir, "*.bin"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs in %s: %v", goldenDir, err)
	}
	for _, path := range inputs {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			tc, ok := goldenCases[name]
			if !ok {
				t.Fatalf("%s is not listed in goldenCases", name)
			}
			checkGolden(t, tc.spec, tc.max, path)
		})
	}
	listed := make([]string, 0, len(goldenCases))
	for name := range goldenCases {
		if !slices.Contains(inputs, filepath.Join(goldenDir, name)) {
			listed = append(listed, name)
		}
	}
	if len(listed) > 0 {
		t.Errorf("goldenCases lists missing inputs: %v", listed)
	}
}

// checkGolden cuts the stream in path with the framer of spec and compares
// the transcript with path's .golden file (-update rewrites it), feeding
// the stream whole, split in two at every byte and one byte at a time: the
// frames, drops and remainder must not depend on read boundaries. Each feed
// gets its own copy, because unescaping framers decode in place.
func checkGolden(t *testing.T, spec string, maxFrame int, path string) {
	t.Helper()
	f, err := ParseFraming(spec)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := transcript(f, maxFrame, cloneChunks([][]byte{in}))
	goldenPath := strings.TrimSuffix(path, ".bin") + ".golden"
	if *update {
		if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantB, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	want := string(wantB)
	if got != want {
		t.Fatalf("whole input:\ngot:\n%s\nwant:\n%s", got, want)
	}
	for i := range len(in) + 1 {
		if got := transcript(f, maxFrame, cloneChunks([][]byte{in[:i], in[i:]})); got != want {
			t.Fatalf("split at %d:\ngot:\n%s\nwant:\n%s", i, got, want)
		}
	}
	bytewise := make([][]byte, len(in))
	for i := range in {
		bytewise[i] = in[i : i+1]
	}
	if got := transcript(f, maxFrame, cloneChunks(bytewise)); got != want {
		t.Fatalf("one byte at a time:\ngot:\n%s\nwant:\n%s", got, want)
	}
}
