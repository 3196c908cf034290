package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/serialcb"
)

type sendFlags struct {
	port     string
	baud     int
	hex      bool
	file     string
	eol      string
	daemon   string
	tokenEnv string
	expect   bool
}

// lineEndings are the values of send --eol.
var lineEndings = map[string]string{"lf": "\n", "crlf": "\r\n", "cr": "\r", "none": ""}

// newSendCmd is `serialcbd send`: write text, hex bytes or a file to a port,
// to talk to a device or to feed a virtual port by hand.
func newSendCmd(g *globals) *cobra.Command {
	var fl sendFlags
	cmd := &cobra.Command{
		Use:   "send --port PATH [--baud N] [--eol lf|crlf|cr|none] (TEXT... | --hex HEX... | --file F)",
		Short: "Write text, hex bytes or a file to a serial port",
		Long: `send opens a port, writes the bytes, waits until they are transmitted and
closes the port.

  TEXT...      the words joined by spaces, then the line ending (--eol, default lf)
  --hex HEX... bytes in hex: "48 65 6c 6c 6f", "48656c6c6f", "48:65:6c" or "0x48 0x65"
  --file F     the file's bytes as they are ("-" reads standard input)

With --hex and --file nothing is appended unless --eol is given.

When 'serialcbd run' owns the port, send does not open it: it asks the
running daemon (--daemon, its metrics address) to write the bytes between
frames, which needs write: {http: true} on that port in the daemon's
config. --port may then be the port's configured name. send never opens a
port another process holds exclusively, even as root (opening it would
clear the daemon's exclusive hold when send closes it).`,
		Example: `  serialcbd send --port /dev/ttyUSB0 --baud 9600 '*IDN?'
  serialcbd send --port /dev/ttyUSB0 --eol crlf AT+GMR
  serialcbd send --port /dev/ttyACM0 --hex 02 31 32 03
  serialcbd send --port /tmp/dev --file testdata/gps.nmea
  serialcbd send --port meter --hex 01 03 00 00 00 02 C4 0B --expect-reply`,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := fl.payload(cmd, args)
			if err != nil {
				return err
			}
			if done, err := sendViaDaemon(cmd.Context(), g, &fl, data); done || err != nil {
				return err
			}
			if fl.expect {
				return usagef("--expect-reply works through a running daemon only; none owns %s at %s", fl.port, fl.daemon)
			}
			n, err := sendBytes(fl.port, fl.baud, data)
			if err != nil {
				return err
			}
			printf(g.stdout, "sent %d bytes to %s\n", n, fl.port)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.port, "port", "p", "", "serial port to write to (required)")
	f.IntVarP(&fl.baud, "baud", "b", 9600, "baud rate")
	f.BoolVar(&fl.hex, "hex", false, "the arguments are bytes in hex")
	f.StringVarP(&fl.file, "file", "f", "", `send this file's bytes ("-": standard input)`)
	f.StringVar(&fl.eol, "eol", "lf", "line ending after TEXT: lf, crlf, cr or none")
	f.StringVar(&fl.daemon, "daemon", "127.0.0.1:9464", `a running daemon's metrics address, asked first ("none": open the port directly)`)
	f.StringVar(&fl.tokenEnv, "token-env", "", "environment variable holding the daemon's write token (token_env in its config)")
	f.BoolVar(&fl.expect, "expect-reply", false, "through the daemon: wait for the device's reply and print it")
	return cmd
}

// payload assembles the bytes to send from the arguments and flags.
func (fl *sendFlags) payload(cmd *cobra.Command, args []string) ([]byte, error) {
	if fl.port == "" {
		return nil, usagef("--port PATH is required (see `serialcbd ports`)")
	}
	if fl.baud <= 0 {
		return nil, usagef("--baud must be positive")
	}
	eol, ok := lineEndings[fl.eol]
	if !ok {
		return nil, usagef("--eol %q: expected lf, crlf, cr or none", fl.eol)
	}
	if !cmd.Flags().Changed("eol") && (fl.hex || fl.file != "") {
		eol = ""
	}
	var data []byte
	switch {
	case fl.hex && fl.file != "":
		return nil, usagef("--hex and --file exclude each other")
	case fl.file != "":
		if len(args) > 0 {
			return nil, usagef("--file takes no TEXT arguments")
		}
		var err error
		if fl.file == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(fl.file)
		}
		if err != nil {
			return nil, usagef("--file: %v", err)
		}
	case fl.hex:
		if len(args) == 0 {
			return nil, usagef("--hex needs the bytes as arguments, e.g. --hex 02 31 03")
		}
		var err error
		if data, err = parseHex(args); err != nil {
			return nil, usagef("--hex: %v", err)
		}
	default:
		if len(args) == 0 {
			return nil, usagef("nothing to send: give TEXT, --hex HEX... or --file F")
		}
		data = []byte(strings.Join(args, " "))
	}
	return append(data, eol...), nil
}

// parseHex reads bytes written as hex pairs, separated or not by spaces,
// colons or commas, each group optionally prefixed with 0x.
func parseHex(args []string) ([]byte, error) {
	var out []byte
	for _, a := range args {
		for _, group := range strings.FieldsFunc(a, func(r rune) bool { return r == ' ' || r == ':' || r == ',' || r == '\t' }) {
			digits := strings.TrimPrefix(strings.TrimPrefix(group, "0x"), "0X")
			b, err := hex.DecodeString(digits)
			if err != nil {
				if errors.Is(err, hex.ErrLength) {
					return nil, fmt.Errorf("%q: odd number of hex digits", group)
				}
				return nil, fmt.Errorf("%q: not hex", group)
			}
			out = append(out, b...)
		}
	}
	return out, nil
}

// sendBytes writes data to the port and waits until it is transmitted.
func sendBytes(path string, baud int, data []byte) (n int, err error) {
	if held, err := serialcb.HeldExclusively(path); err == nil && held {
		return 0, fmt.Errorf("%s is held exclusively by another process (a serialcbd daemon without write: {http: true}, or another program; "+
			"find it with `fuser -v %s`): not opening it, which would release that hold", path, path)
	}
	port, err := serialcb.Open(serialcb.PortConfig{Path: path, Baud: baud})
	if err != nil {
		if errors.Is(err, serialcb.ErrPortNotFound) {
			return 0, usagef("%v", err)
		}
		if errors.Is(err, serialcb.ErrPortBusy) {
			return 0, fmt.Errorf("%w; if `serialcbd run` holds it, give that port write: {http: true} and send goes through the daemon (--daemon ADDR when it is not on 127.0.0.1:9464)", err)
		}
		return 0, err
	}
	defer func() {
		if cerr := port.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
	}()
	for n < len(data) {
		m, err := port.Write(data[n:])
		n += m
		if err == nil && m == 0 {
			err = io.ErrShortWrite // a driver that accepts nothing: do not spin
		}
		if err != nil {
			return n, fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := port.Drain(); err != nil {
		return n, fmt.Errorf("drain %s: %w", path, err)
	}
	return n, nil
}
