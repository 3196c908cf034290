package main

import (
	"os"
	"testing"

	"github.com/serialcbd/serialcbd/dispatch/daemon/bench"
)

// TestMain lets `bench --rate` start this test binary as its writer
// process, as it starts serialcbd itself.
func TestMain(m *testing.M) {
	if bench.IsWriter() {
		os.Exit(bench.WriterMain())
	}
	os.Exit(m.Run())
}
