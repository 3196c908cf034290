// Package decode turns frame payloads into named fields: each Decoder
// appends one JSON object ({"name":value,...}) describing a payload, which
// the daemon stores in serialcb.Frame.Fields and every sink writes next to
// the payload.
//
// A decoder is chosen by a spec string (Parse):
//
//	regex:EXPR              named groups of the RE2 expression EXPR become string fields
//	csv:NAME,NAME,...[;sep=X][;numbers]
//	                        columns split at X (default ','), by position, as strings;
//	                        with ;numbers a value that is a JSON number is written as one
//	json                    the payload is one JSON object, validated and compacted
//	nmea                    an NMEA 0183 sentence: talker, type, raw fields, and named
//	                        fields for GGA, RMC, GLL and VTG
//	hex                     {"hex":"0a1b..."}
//	base64                  {"base64":"Chs="}
//
// A payload a decoder cannot read (no match, too few columns, not a JSON
// object, not NMEA) is an error wrapping ErrMismatch; the caller keeps the
// frame without fields. Decoders never panic, are safe for concurrent use,
// and always append valid JSON (strings are escaped, bytes that are not
// UTF-8 become U+FFFD) or nothing. None allocates per byte of payload; only
// regex allocates at all (one small index slice per frame).
package decode

import (
	"errors"
	"fmt"
	"strings"
)

// Decoder appends the fields of one payload to dst.
type Decoder interface {
	// Append appends one JSON object holding the fields found in payload
	// and returns the extended slice. When payload does not have the
	// expected shape it returns dst unchanged and an error wrapping
	// ErrMismatch.
	Append(dst, payload []byte) ([]byte, error)
}

// ErrMismatch is wrapped by every error a Decoder returns: the payload does
// not have the shape the spec describes.
var ErrMismatch = errors.New("payload does not match the decoder")

// mismatch is a static decode error. Being a string constant converted to an
// interface, returning one does not allocate.
type mismatch string

func (e mismatch) Error() string        { return string(e) }
func (e mismatch) Is(target error) bool { return target == ErrMismatch }

// Kinds lists the spec kinds Parse accepts, for help texts.
const Kinds = "regex:EXPR, csv:NAME,...[;sep=X][;numbers], json, nmea, hex, base64"

// Parse returns the decoder for spec (see the package documentation for
// the grammar). Errors describe what is wrong with the spec.
func Parse(spec string) (Decoder, error) {
	kind, arg, hasArg := strings.Cut(spec, ":")
	switch kind {
	case "regex":
		if !hasArg || arg == "" {
			return nil, errors.New("decode regex: missing expression after regex: (e.g. regex:^T=(?P<temp>[0-9.]+)$)")
		}
		return newRegex(arg)
	case "csv":
		if !hasArg || arg == "" {
			return nil, errors.New("decode csv: missing column names after csv: (e.g. csv:ms,temp,rh)")
		}
		return newCSV(arg)
	case "json", "nmea", "hex", "base64":
		if hasArg {
			return nil, fmt.Errorf("decode %s: takes no argument, got %q", kind, arg)
		}
		switch kind {
		case "json":
			return jsonDecoder{}, nil
		case "nmea":
			return nmeaDecoder{}, nil
		case "hex":
			return hexDecoder{}, nil
		default:
			return base64Decoder{}, nil
		}
	case "":
		return nil, fmt.Errorf("decode: empty spec (expected one of %s)", Kinds)
	}
	return nil, fmt.Errorf("decode %q: unknown kind %q (expected one of %s)", spec, kind, Kinds)
}
