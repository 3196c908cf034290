package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/serialcbd/serialcbd/dispatch/portio"
)

// sendViaDaemon asks the daemon at fl.daemon to write data to fl.port. It
// reports done when the daemon took the request (its error, if any, is the
// write's); false with a nil error means no daemon owns the port, so send
// may open it.
func sendViaDaemon(ctx context.Context, g *globals, fl *sendFlags, data []byte) (done bool, err error) {
	if fl.daemon == "" || fl.daemon == "none" {
		return false, nil
	}
	target, err := portio.WriteURL(fl.daemon, fl.port, fl.expect)
	if err != nil {
		return false, usagef("--daemon %q: %v", fl.daemon, err)
	}
	var tok string
	if fl.tokenEnv != "" {
		var ok bool
		if tok, ok = os.LookupEnv(fl.tokenEnv); !ok {
			return false, usagef("--token-env: environment variable %s is not set", fl.tokenEnv)
		}
	}
	a, err := portio.PostWrite(ctx, target, data, tok)
	var re *portio.RemoteError
	var na *portio.NoAnswerError
	switch {
	case errors.Is(err, portio.ErrNoWriter):
		return false, nil
	case errors.As(err, &na):
		// The request may have reached a daemon: writes are at most once,
		// so do not try again by opening the port.
		return true, fmt.Errorf("no answer from the daemon at %s (the write may or may not have happened): %w", fl.daemon, na.Err)
	case errors.As(err, &re) && re.Answer.Owned:
		return true, fmt.Errorf("the daemon at %s owns %s: %s", fl.daemon, fl.port, re.Answer.Error)
	case errors.As(err, &re) && re.Status == http.StatusUnauthorized:
		return true, fmt.Errorf("the daemon at %s wants a token for %s: pass --token-env NAME with the variable its token_env names", fl.daemon, fl.port)
	case errors.As(err, &re):
		return true, fmt.Errorf("the daemon at %s did not write to %s (HTTP %d): %s", fl.daemon, fl.port, re.Status, re.Answer.Error)
	case err != nil:
		return false, usagef("--daemon %q: %v", fl.daemon, err)
	}
	printf(g.stdout, "sent %d bytes to %s through the daemon at %s (request %s)\n", a.Bytes, fl.port, fl.daemon, a.RequestID)
	if a.Reply != nil {
		raw, err := a.ReplyBytes()
		if err != nil {
			return true, fmt.Errorf("reply: %w", err)
		}
		printf(g.stdout, "reply after %d µs: %s %q\n", a.RTTMicros, hex.EncodeToString(raw), raw)
	}
	return true, nil
}
