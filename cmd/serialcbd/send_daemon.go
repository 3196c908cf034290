package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// daemonAnswer is what the write endpoint answers.
type daemonAnswer struct {
	RequestID string `json:"request_id"`
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	Bytes     int    `json:"bytes"`
	RTT       int64  `json:"rtt_us"`
	Owned     bool   `json:"port_owned"`
	Reply     *struct {
		Payload  string `json:"payload"`
		Encoding string `json:"encoding"`
	} `json:"reply"`
}

// sendViaDaemon asks the daemon at fl.daemon to write data to fl.port. It
// reports done when the daemon took the request (its error, if any, is the
// write's); false with a nil error means no daemon owns the port, so send
// may open it.
func sendViaDaemon(ctx context.Context, g *globals, fl *sendFlags, data []byte) (done bool, err error) {
	if fl.daemon == "" || fl.daemon == "none" {
		return false, nil
	}
	base := fl.daemon
	if u, err := url.Parse(base); err != nil || u.Scheme == "" || u.Host == "" {
		base = "http://" + base
	}
	target := base + "/ports/" + url.PathEscape(fl.port) + "/write"
	if fl.expect {
		target += "?expect_reply=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return false, usagef("--daemon %q: %v", fl.daemon, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if fl.tokenEnv != "" {
		tok, ok := os.LookupEnv(fl.tokenEnv)
		if !ok {
			return false, usagef("--token-env: environment variable %s is not set", fl.tokenEnv)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
	resp, err := client.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return false, nil // no daemon there
		}
		// The request may have reached a daemon: writes are at most once,
		// so do not try again by opening the port.
		return true, fmt.Errorf("no answer from the daemon at %s (the write may or may not have happened): %w", fl.daemon, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var a daemonAnswer
	jsonErr := json.Unmarshal(body, &a)
	switch {
	case resp.StatusCode == http.StatusNotFound && jsonErr == nil && a.Owned:
		return true, fmt.Errorf("the daemon at %s owns %s: %s", fl.daemon, fl.port, a.Error)
	case resp.StatusCode == http.StatusNotFound || jsonErr != nil:
		return false, nil // not a daemon, or not its port
	case resp.StatusCode == http.StatusUnauthorized:
		return true, fmt.Errorf("the daemon at %s wants a token for %s: pass --token-env NAME with the variable its token_env names", fl.daemon, fl.port)
	case !a.OK:
		return true, fmt.Errorf("the daemon at %s did not write to %s (HTTP %d): %s", fl.daemon, fl.port, resp.StatusCode, a.Error)
	}
	printf(g.stdout, "sent %d bytes to %s through the daemon at %s (request %s)\n", a.Bytes, fl.port, fl.daemon, a.RequestID)
	if a.Reply != nil {
		raw := []byte(a.Reply.Payload)
		if a.Reply.Encoding == "base64" {
			if raw, err = base64.StdEncoding.DecodeString(a.Reply.Payload); err != nil {
				return true, fmt.Errorf("reply: %w", err)
			}
		}
		printf(g.stdout, "reply after %d µs: %s %q\n", a.RTT, hex.EncodeToString(raw), raw)
	}
	return true, nil
}
