package main

import (
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
)

// TestHelpListsEverySinkAndFraming: the root's and run's --help name every
// sink kind of the registry and every framing ParseFraming knows.
func TestHelpListsEverySinkAndFraming(t *testing.T) {
	want := append(daemon.NewRegistry().Prefixes(), "lines:DELIM", "idle:", "fixed:", "len:", "stx-etx", "slip", "cobs", "regex:", ":flush=")
	for _, args := range [][]string{{"--help"}, {"run", "--help"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%v does not mention %q", args, w)
			}
		}
	}
}
