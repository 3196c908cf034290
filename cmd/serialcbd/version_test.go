package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfo(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/serialcbd/serialcbd", Version: "v0.0.0-20261207120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-07T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	plat := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name                  string
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  string
	}{
		{"release build: the linker's values win", "v0.1.0", "fedcba9876543210fedcba9876543210fedcba98", "2026-12-07T13:00:00Z", vcs,
			"serialcbd 0.1.0 (commit fedcba987654, built 2026-12-07T13:00:00Z) go1.26.8 " + plat},
		{"go build in a checkout", "", "", "", vcs,
			"serialcbd 0.0.0-20261207120000-0123456789ab+dirty (commit 0123456789ab, modified, built 2026-12-07T12:00:00Z) go1.26.8 " + plat},
		{"go install of a tagged module", "", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.1.0"}},
			"serialcbd 0.1.0 go1.26.8 " + plat},
		{"outside a checkout", "", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"serialcbd devel go1.26.8 " + plat},
		{"no build info", "", "", "", nil,
			"serialcbd devel " + runtime.Version() + " " + plat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := makeBuildInfo(tt.version, tt.commit, tt.date, tt.bi).String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestVersionFlagAndCommandAgree(t *testing.T) {
	code, cmdOut, _ := runCLI(t, "version")
	if code != exitOK {
		t.Fatalf("version: exit %d", code)
	}
	code, flagOut, _ := runCLI(t, "--version")
	if code != exitOK {
		t.Fatalf("--version: exit %d", code)
	}
	if cmdOut != flagOut {
		t.Errorf("version printed %q, --version %q", cmdOut, flagOut)
	}
	if !strings.HasPrefix(cmdOut, "serialcbd ") || !strings.Contains(cmdOut, runtime.Version()) || strings.Contains(cmdOut, "(devel)") {
		t.Errorf("version output %q: want serialcbd VERSION … %s, never (devel)", cmdOut, runtime.Version())
	}
}
