package main

import (
	"strings"
	"testing"
)

// TestHelpListsEverySinkAndFraming: the root's and run's --help name every
// sink kind of the registry and every framing ParseFraming knows.
func TestHelpListsEverySinkAndFraming(t *testing.T) {
	var want []string
	for _, k := range newRegistry().kinds {
		for _, p := range k.prefixes {
			want = append(want, p)
		}
	}
	want = append(want, "lines:DELIM", "idle:", "fixed:", "len:", "stx-etx", "slip", "cobs", "regex:", ":flush=")
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
