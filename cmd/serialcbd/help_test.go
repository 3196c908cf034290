package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/serialcb"
)

// TestHelpListsEverySinkAndFraming: the root's and run's --help name every
// sink kind of the registry and every framing ParseFraming knows.
func TestHelpListsEverySinkAndFraming(t *testing.T) {
	want := daemon.NewRegistry().Prefixes()
	// Every framing name the parser documents: "lines", "idle:Nc", …
	for _, m := range regexp.MustCompile(`"([a-z][a-z-]*)[":]`).FindAllStringSubmatch(serialcb.FramingHelp, -1) {
		want = append(want, m[1])
	}
	if len(want) < 15 {
		t.Fatalf("found only %v in the registry and serialcb.FramingHelp", want)
	}
	want = append(want, ":flush=", ":include", ":ready=")
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
