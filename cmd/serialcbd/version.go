package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
)

// Release builds stamp these with the linker (see .ci/release):
//
//	go build -ldflags "-X main.version=0.1.0 -X main.commit=$(git rev-parse HEAD) -X main.date=2026-12-07T12:00:00Z" ./cmd/serialcbd
//
// They are never assigned at run time.
var (
	version string
	commit  string
	date    string
)

// buildInfo says which serialcbd this is.
type buildInfo struct {
	Version   string // 0.1.0, a module version (go install …@v0.1.0), or "devel"
	Commit    string // full VCS revision, "" when unknown
	Modified  bool   // built from a work tree with uncommitted changes
	Date      string // RFC 3339 build (release) or commit (go build) time, "" when unknown
	GoVersion string
	Platform  string // GOOS/GOARCH, with the ARM variant (linux/arm/v7)
}

// readBuildInfo prefers the linker-stamped values of a release build and
// fills what they leave out from the build information Go embeds: the
// module version of `go install …@vX.Y.Z`, and the VCS revision, time and
// dirty flag of a `go build` in a git checkout.
func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return makeBuildInfo(version, commit, date, bi)
}

func makeBuildInfo(version, commit, date string, bi *debug.BuildInfo) buildInfo {
	info := buildInfo{
		Version:   strings.TrimPrefix(version, "v"),
		Commit:    commit,
		Date:      date,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	var vcsRevision, vcsTime string
	var vcsModified bool
	if bi != nil {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = strings.TrimPrefix(bi.Main.Version, "v")
		}
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRevision = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				vcsModified = s.Value == "true"
			case "GOARM":
				if runtime.GOARCH == "arm" {
					info.Platform += "/v" + strings.TrimSuffix(strings.TrimSuffix(s.Value, ",softfloat"), ",hardfloat")
				}
			}
		}
	}
	if info.Commit == "" {
		info.Commit = vcsRevision
		info.Modified = vcsModified
	}
	if info.Date == "" {
		info.Date = vcsTime
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// String is the one-line form: serialcbd 0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-07T12:00:00Z) go1.26.8 linux/amd64
func (b buildInfo) String() string {
	var s strings.Builder
	s.WriteString("serialcbd " + b.Version)
	var details []string
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += ", modified"
		}
		details = append(details, "commit "+c)
	}
	if b.Date != "" {
		details = append(details, "built "+b.Date)
	}
	if len(details) > 0 {
		s.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	s.WriteString(" " + b.GoVersion + " " + b.Platform)
	return s.String()
}

func (b buildInfo) print(w io.Writer) { fmt.Fprintln(w, b.String()) }

// daemon is what the daemon's serialcbd_build_info gauge shows.
func (b buildInfo) daemon() daemon.BuildInfo {
	return daemon.BuildInfo{Version: b.Version, Commit: b.Commit, GoVersion: b.GoVersion}
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version (same as --version)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			readBuildInfo().print(g.stdout)
			return nil
		},
	}
}
