package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

func TestSendCmd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(file, []byte("\x00\xffraw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"text lf", []string{"hello", "world"}, "", "hello world\n"},
		{"text crlf", []string{"--eol", "crlf", "AT+GMR"}, "", "AT+GMR\r\n"},
		{"text cr", []string{"--eol", "cr", "x"}, "", "x\r"},
		{"text none", []string{"--eol", "none", "x"}, "", "x"},
		{"hex spaced", []string{"--hex", "02", "31 32", "03"}, "", "\x02\x31\x32\x03"},
		{"hex packed, colons, 0x", []string{"--hex", "4869", "0a:0D", "0xff"}, "", "Hi\n\r\xff"},
		{"hex with eol", []string{"--hex", "--eol", "crlf", "41"}, "", "A\r\n"},
		{"file as is", []string{"--file", file}, "", "\x00\xffraw\n"},
		{"stdin", []string{"--file", "-"}, "from stdin", "from stdin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pair, err := vport.Open()
			if err != nil {
				t.Skipf("no virtual ports here: %v", err)
			}
			defer pair.Close()
			var out bytes.Buffer
			cmd := newSendCmd(&globals{stdout: &out, stderr: &out})
			cmd.SetArgs(append([]string{"--port", pair.Path(), "--baud", "115200"}, tt.args...))
			cmd.SetIn(strings.NewReader(tt.stdin))
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if want := "sent " + strconv.Itoa(len(tt.want)) + " bytes to " + pair.Path() + "\n"; out.String() != want {
				t.Errorf("stdout %q, want %q", out.String(), want)
			}
			// send drained the port before it returned: the bytes wait on
			// the device side. The timer only bounds a failure.
			got := make([]byte, len(tt.want))
			read := make(chan error, 1)
			go func() { _, err := io.ReadFull(pair, got); read <- err }()
			select {
			case err := <-read:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				pair.Close()
				t.Fatalf("device got only part of %q", tt.want)
			}
			if string(got) != tt.want {
				t.Errorf("device got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSendCmdErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ttyNOPE0")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no port", []string{"x"}, exitUsage, "--port PATH is required"},
		{"nothing", []string{"--port", missing}, exitUsage, "nothing to send"},
		{"bad eol", []string{"--port", missing, "--eol", "crlf2", "x"}, exitUsage, `--eol "crlf2"`},
		{"bad hex", []string{"--port", missing, "--hex", "4g"}, exitUsage, `"4g": not hex`},
		{"odd hex", []string{"--port", missing, "--hex", "123"}, exitUsage, "odd number"},
		{"hex and file", []string{"--port", missing, "--hex", "--file", "x", "41"}, exitUsage, "exclude"},
		{"file and text", []string{"--port", missing, "--file", "x", "hi"}, exitUsage, "no TEXT"},
		{"missing file", []string{"--port", missing, "--file", missing + ".bin"}, exitUsage, "--file"},
		{"missing port", []string{"--port", missing, "hi"}, exitUsage, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newSendCmd(&globals{stdout: io.Discard, stderr: io.Discard})
			cmd.SetArgs(tt.args)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.Execute()
			if err == nil {
				t.Fatal("no error")
			}
			if code := exitCode(err); code != tt.code {
				t.Errorf("exit %d, want %d: %v", code, tt.code, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
}
