package portio

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
)

// HTTPPort is what the write endpoint needs of one port.
type HTTPPort struct {
	Port *Port
	// Token, when set, must come as "Authorization: Bearer TOKEN".
	Token string
	// ExpectReply is the port's default for ?expect_reply.
	ExpectReply bool
	// HTTP is true when the port takes HTTP writes; a port the daemon
	// reads that does not is answered 404 with "port_owned": true.
	HTTP bool
}

// HTTPHandler serves POST /ports/NAME/write: the request body is written to
// port NAME as is, and the response is the Outcome as JSON, once the bytes
// are written (or the reply came, with ?expect_reply=true). lookup returns
// the port by its name or its device path, or false when the daemon has no
// such port.
//
// Status codes: 200 written; 400 empty body or bad query; 401 missing or
// wrong token; 404 unknown or non-writable port; 405 not POST; 409 port
// down; 413 body over max_bytes; 429 rate-limited; 503 write queue full or
// stopping; 504 not written in time, or no reply in time; 502 invalid
// reply; 500 a failed write. Every answer but 404, 405 and 401 has the
// Outcome as its body.
func HTTPHandler(lookup func(name string) (HTTPPort, bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// NAME may be a path-escaped device path (%2Fdev%2FttyUSB0), which
		// `serialcbd send --port PATH` uses.
		name, ok := strings.CutPrefix(r.URL.EscapedPath(), "/ports/")
		if ok {
			name, ok = strings.CutSuffix(name, "/write")
		}
		if ok && !strings.Contains(name, "/") {
			var err error
			name, err = url.PathUnescape(name)
			ok = err == nil
		}
		if !ok || name == "" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			httpError(w, http.StatusMethodNotAllowed, "use POST with the bytes to write as the body")
			return
		}
		hp, ok := lookup(name)
		if !ok {
			httpError(w, http.StatusNotFound, "no port named "+strconv.Quote(name))
			return
		}
		if hp.Port == nil || !hp.Port.cfg.Writable || !hp.HTTP {
			// Owned tells `serialcbd send` not to open the port itself.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
				Owned bool   `json:"port_owned"`
			}{false, "port " + strconv.Quote(name) + " does not take HTTP writes: give it write: {http: true} in the config", true})
			return
		}
		if hp.Token != "" {
			got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(hp.Token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="serialcbd"`)
				httpError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		expect := hp.ExpectReply
		if v := r.URL.Query().Get("expect_reply"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				httpError(w, http.StatusBadRequest, "expect_reply: want true or false")
				return
			}
			expect = b
		}
		limit := hp.Port.cfg.MaxBytes
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
		var mbe *http.MaxBytesError
		var fut *asyncloop.Future[Outcome]
		switch {
		case errors.As(err, &mbe):
			// Counted and reported like any oversize write, with the
			// port's outcome.
			fut = hp.Port.Write(make([]byte, limit+1), WriteOptions{Source: "http"})
		case err != nil:
			httpError(w, http.StatusBadRequest, "reading the body: "+err.Error())
			return
		default:
			fut = hp.Port.Write(body, WriteOptions{Source: "http", ExpectReply: expect})
		}
		o, err := fut.Result(r.Context())
		if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
			_ = fut.Err() // the client left; the outcome is counted all the same
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(HTTPStatus(err))
		_ = json.NewEncoder(w).Encode(o)
	})
}

// HTTPStatus maps a write's error to the endpoint's status code.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrNotWritable):
		return http.StatusNotFound
	case errors.Is(err, ErrEmpty):
		return http.StatusBadRequest
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, serialcb.ErrPortDown):
		return http.StatusConflict
	case errors.Is(err, ErrQueueFull), errors.Is(err, serialcb.ErrWriteQueueFull), errors.Is(err, ErrStopped),
		errors.Is(err, asyncloop.ErrQueueFull), errors.Is(err, asyncloop.ErrClosed), errors.Is(err, asyncloop.ErrNotRunning):
		return http.StatusServiceUnavailable
	case errors.Is(err, serialcb.ErrWriteExpired), errors.Is(err, ErrReplyTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrInvalidReply):
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}{false, msg})
}
