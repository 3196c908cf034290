package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// writeAtRaw writes where os.File.WriteAt would, including past 4 GiB,
// where 32-bit ARM and i386 split the offset over two registers (CI runs
// this under qemu-user for arm). The file is sparse: nothing is stored
// but the written pages.
func TestWriteAtRawOffsets(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{0, 7, 4095, 1 << 31, 1<<32 + 3, 5<<30 + 12345} {
		data := []byte("record at " + string(rune('a'+off%26)))
		n, err := writeAtRaw(f, data, off)
		if err != nil {
			if off >= 1<<31 {
				t.Skipf("the file system refused a sparse write at %d: %v", off, err)
			}
			t.Fatalf("writeAtRaw at %d: %v", off, err)
		}
		if n != len(data) {
			t.Fatalf("writeAtRaw at %d wrote %d of %d bytes", off, n, len(data))
		}
		got := make([]byte, len(data))
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatalf("read back at %d: %v", off, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("at %d: read %q, wrote %q", off, got, data)
		}
	}
	// Past rawWriteMax (Linux): the ordinary WriteAt, same result.
	big := bytes.Repeat([]byte{'x'}, 64<<10)
	if n, err := writeAtRaw(f, big, 100); err != nil || n != len(big) {
		t.Fatalf("big writeAtRaw: %d, %v", n, err)
	}
}
