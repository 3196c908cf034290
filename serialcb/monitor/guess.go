package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// guessMaxSample bounds the bytes Guess looks at.
const guessMaxSample = 4 << 20

// guessMinGap is the shortest silence Guess counts as a gap between frames
// on a port (USB adapters deliver in bursts of about 1 ms).
const guessMinGap = 5 * time.Millisecond

// runGuess reads a sample from the capture file or the port and prints
// the framings that explain most of it, best first, with a suggestion.
func runGuess(ctx context.Context, o Options) error {
	w := o.Out
	if w == nil {
		w = os.Stdout
	}
	var sample []byte
	var gaps []int
	gap := time.Duration(0)
	var from string
	if o.File != "" {
		f, err := os.Open(o.File)
		if err != nil {
			return usagef("--file: %v", err)
		}
		defer f.Close()
		sample, err = io.ReadAll(io.LimitReader(f, guessMaxSample))
		if err != nil {
			return fmt.Errorf("read %s: %w", o.File, err)
		}
		from = o.File
	} else {
		cfg := serialcb.PortConfig{Path: o.Port, Baud: o.Baud, DataBits: o.DataBits, Parity: serialcb.Parity(o.Parity), StopBits: o.StopBits}
		if err := cfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		gap = max(guessMinGap, time.Duration(3.5*float64(cfg.CharTime())))
		var err error
		sample, gaps, err = samplePort(ctx, cfg, o.GuessFor, gap)
		if err != nil {
			return err
		}
		from = fmt.Sprintf("%v of %s at %d baud, %d silences of %v or more", o.GuessFor, o.Port, o.Baud, len(gaps), gap)
	}
	fmt.Fprintf(w, "# guessing from %d bytes (%s)\n", len(sample), from)
	guesses := serialcb.GuessFraming(sample, gaps, gap)
	for _, gs := range guesses {
		fmt.Fprintf(w, "%5.1f%%  %-44s %s\n", 100*gs.Share, guessFlags(gs), gs.Note)
	}
	if len(guesses) == 0 || guesses[0].Share < 0.5 {
		fmt.Fprintln(w, "# no framing explains half of the bytes: look at them with --hex, or read longer (--guess-for)")
		return nil
	}
	fmt.Fprintf(w, "suggested: %s\n", guessFlags(guesses[0]))
	return nil
}

// guessFlags renders a guess as the flags of run and monitor.
func guessFlags(gs serialcb.Guess) string {
	s := "--framing " + shellQuote(gs.Framing)
	if gs.Validate != "" {
		s += " --validate " + gs.Validate
	}
	return s
}

// shellQuote quotes s for a POSIX shell when it holds anything special.
func shellQuote(s string) string {
	if strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:=._-+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// samplePort reads the port for d (or until ctx ends, as on Ctrl-C, or the
// sample is full) and returns the bytes and the offsets after which the
// line was silent for at least gap.
func samplePort(ctx context.Context, cfg serialcb.PortConfig, d, gap time.Duration) (sample []byte, gaps []int, err error) {
	port, err := serialcb.Open(cfg)
	if err != nil {
		var oe *serialcb.OpenError
		if errors.As(err, &oe) {
			return nil, nil, usagef("%v", err)
		}
		return nil, nil, err
	}
	defer port.Close()
	if ctx == nil {
		ctx = context.Background()
	}
	buf := make([]byte, 4096)
	var last time.Time
	for end := time.Now().Add(d); ctx.Err() == nil && len(sample) < guessMaxSample; {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		if err := port.SetReadTimeout(min(left, 100*time.Millisecond)); err != nil {
			return nil, nil, fmt.Errorf("set read timeout: %w", err)
		}
		n, err := port.Read(buf)
		if n > 0 {
			now := time.Now()
			if !last.IsZero() && now.Sub(last) >= gap {
				gaps = append(gaps, len(sample))
			}
			sample = append(sample, buf[:n]...)
			last = now
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", cfg.Path, err)
		}
	}
	return sample, gaps, nil
}
