//go:build linux

package serialcb

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary, started again as another user, open one
// port and print the error: root bypasses both the device's permissions and
// TIOCEXCL, so only an unprivileged process sees the errors users see.
const childEnv = "SERIALCB_TEST_OPEN_AS_CHILD"

func TestOpenChildHelper(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("helper for TestOpenErrorsAsUnprivilegedUser")
	}
	p, err := Open(PortConfig{Name: "p", Path: path, Baud: 9600})
	if err == nil {
		p.Close()
		fmt.Println("OPENED")
		return
	}
	var oe *OpenError
	kind := "other"
	if errors.As(err, &oe) {
		kind = oe.Kind.String()
	}
	fmt.Printf("KIND=%s\nERR=%v\n", kind, err)
}

// openAsNobody runs the helper as uid/gid 65534 and returns its output.
func openAsNobody(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "serialcb.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755) // the child must reach the binary
	}
	cmd := exec.Command(bin, "-test.run=^TestOpenChildHelper$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child as uid 65534:\n%s", out)
	return string(out)
}

func TestOpenErrorsAsUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to start a child process as another user")
	}
	// The hint follows the device's owner, group and mode: joining dialout
	// helps only with a device of group dialout.
	dialout, dialoutErr := user.LookupGroup("dialout")
	for _, tt := range []struct {
		name  string
		gid   string // "" keeps the pty's group
		mode  os.FileMode
		want  []string
		avoid []string
	}{
		{"pty 0620", "", 0o620, []string{"mode 0620", "only root may open it", "udev rule"}, []string{"dialout"}},
		{"root:root 0600", "0", 0o600, []string{"root:root, mode 0600", "only root may open it"}, []string{"dialout", "usermod"}},
		{"root:dialout 0660", "dialout", 0o660, []string{"root:dialout, mode 0660", "group dialout", "sudo usermod -aG dialout $USER", "SupplementaryGroups=dialout", "--group-add dialout"}, nil},
	} {
		t.Run("permission denied "+tt.name, func(t *testing.T) {
			p := newPair(t)
			gid := tt.gid
			if gid == "dialout" {
				if dialoutErr != nil {
					t.Skip("no dialout group here:", dialoutErr)
				}
				gid = dialout.Gid
			}
			if gid != "" {
				n, _ := strconv.Atoi(gid)
				if err := os.Chown(p.SlavePath(), 0, n); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(p.SlavePath(), tt.mode); err != nil {
				t.Fatal(err)
			}
			out := openAsNobody(t, p.SlavePath())
			if !strings.Contains(out, "KIND="+OpenPermission.String()) {
				t.Fatalf("want a permission error:\n%s", out)
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for _, avoid := range tt.avoid {
				if strings.Contains(out, avoid) {
					t.Errorf("output has %q:\n%s", avoid, out)
				}
			}
			if low := strings.ToLower(out); strings.Contains(low, "permission denied: permission denied") {
				t.Errorf("output repeats itself:\n%s", out)
			}
		})
	}
	t.Run("busy", func(t *testing.T) {
		p := newPair(t)
		if err := os.Chmod(p.SlavePath(), 0o666); err != nil {
			t.Fatal(err)
		}
		held, err := Open(PortConfig{Name: "p", Path: p.SlavePath(), Baud: 9600}) // takes TIOCEXCL
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		out := openAsNobody(t, p.SlavePath())
		for _, want := range []string{"KIND=" + OpenBusy.String(), "another process holds the port", "fuser -v " + p.SlavePath()} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if low := strings.ToLower(out); strings.Contains(low, "busy: serial port busy") {
			t.Errorf("output repeats itself:\n%s", out)
		}
	})
}
