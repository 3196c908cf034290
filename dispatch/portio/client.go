package portio

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// ErrNoWriter means no daemon took a PostWrite: nothing listens at the
// address, what answers is not a serialcbd daemon, or the daemon does not
// read the port. The caller may open the port itself.
var ErrNoWriter = errors.New("no daemon writes to the port at that address")

// WriteAnswer is the write endpoint's answer, as a client reads it: the
// Outcome's JSON, or an error body (with Owned for a port the daemon reads
// but that takes no HTTP writes).
type WriteAnswer struct {
	RequestID string `json:"request_id"`
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	Bytes     int    `json:"bytes"`
	RTTMicros int64  `json:"rtt_us"`
	Owned     bool   `json:"port_owned"`
	Reply     *struct {
		Payload  string `json:"payload"`
		Encoding string `json:"encoding"`
	} `json:"reply"`
}

// ReplyBytes returns the reply's payload, decoding base64; nil without a
// reply.
func (a *WriteAnswer) ReplyBytes() ([]byte, error) {
	if a.Reply == nil {
		return nil, nil
	}
	if a.Reply.Encoding == "base64" {
		return base64.StdEncoding.DecodeString(a.Reply.Payload)
	}
	return []byte(a.Reply.Payload), nil
}

// RemoteError is a daemon's answer that it did not write: Status is the
// HTTP status (401: a token is wanted; 404 with Answer.Owned: the daemon
// owns the port but takes no HTTP writes to it).
type RemoteError struct {
	Status int
	Answer WriteAnswer
}

// Error returns the status and the daemon's message.
func (e *RemoteError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Answer.Error) }

// NoAnswerError is a request that may have reached the daemon but got no
// answer: the write may or may not have happened, and since writes are at
// most once, it must not be tried again another way.
type NoAnswerError struct{ Err error }

// Error returns why there was no answer.
func (e *NoAnswerError) Error() string { return e.Err.Error() }

// Unwrap returns why there was no answer.
func (e *NoAnswerError) Unwrap() error { return e.Err }

// WriteURL is the write endpoint of port on the daemon whose metrics
// server is at addr (HOST:PORT, or a URL with a scheme). Its error is
// the malformed URL's.
func WriteURL(addr, port string, expectReply bool) (string, error) {
	base := addr
	if u, err := url.Parse(base); err != nil || u.Scheme == "" || u.Host == "" {
		base = "http://" + base
	}
	target := base + "/ports/" + url.PathEscape(port) + "/write"
	if expectReply {
		target += "?expect_reply=true"
	}
	if _, err := url.Parse(target); err != nil {
		return "", err
	}
	return target, nil
}

// PostWrite posts data to the write endpoint target (from WriteURL), with
// token as a bearer token when set, and returns the daemon's answer once
// the bytes are written (or the reply came). Its errors are ErrNoWriter,
// *RemoteError and *NoAnswerError.
func PostWrite(ctx context.Context, target string, data []byte, token string) (*WriteAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
	resp, err := client.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return nil, ErrNoWriter // no daemon there
		}
		return nil, &NoAnswerError{Err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var a WriteAnswer
	jsonErr := json.Unmarshal(body, &a)
	switch {
	case resp.StatusCode == http.StatusNotFound && jsonErr == nil && a.Owned:
		return nil, &RemoteError{Status: resp.StatusCode, Answer: a}
	case resp.StatusCode == http.StatusNotFound || jsonErr != nil:
		return nil, ErrNoWriter // not a daemon, or not its port
	case resp.StatusCode == http.StatusUnauthorized, !a.OK:
		return nil, &RemoteError{Status: resp.StatusCode, Answer: a}
	}
	return &a, nil
}
