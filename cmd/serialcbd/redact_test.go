package main

import (
	"strings"
	"testing"
)

// TestSinkSecretsNeverPrinted: validate and run, with a config or with
// --sink, never print the password or a secret query value of a sink URL,
// whatever is wrong with it.
func TestSinkSecretsNeverPrinted(t *testing.T) {
	specs := []string{
		"htp://u:SECRET@host/x",                  // unknown scheme
		"htp://u:SECRET@host/x?token=SECRET",     // and a token
		"http://u:SECRET@host:99999/x",           // bad port
		"http://u:SECRET%zz@host/x",              // bad escape in the password
		"postgres://u:SECRET@h:70000/db",         // bad port
		"https://host:0/x?api_key=SECRET",        // bad query
		"mqtt://u:SECRET@broker/t",               // user info not supported
		"http://u:SECRET@[::1/x?password=SECRET", // unparsable
	}
	for _, spec := range specs {
		cfg := writeFile(t, "c.yaml", "state_dir: "+t.TempDir()+"\nports:\n  - name: p\n    path: /dev/null\nsinks:\n  - name: s\n    url: '"+spec+"'\n")
		for _, args := range [][]string{
			{"validate", "--config", cfg},
			{"run", "--config", cfg, "--metrics-addr", ""},
			{"run", "--port", "/dev/null", "--sink", spec, "--metrics-addr", ""},
		} {
			code, stdout, stderr := runCLI(t, args...)
			if code != exitUsage {
				t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, stderr)
			}
			if strings.Contains(stdout+stderr, "SECRET") {
				t.Errorf("%v prints the secret:\n%s%s", args, stdout, stderr)
			}
		}
	}
}
