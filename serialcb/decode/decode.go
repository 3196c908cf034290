// Package decode turns frame payloads into named fields: each Decoder
// appends one JSON object ({"name":value,...}) describing a payload, which
// the daemon stores in serialcb.Frame.Fields and every sink writes next to
// the payload.
//
// A decoder is chosen by a spec string (Parse):
//
//	regex:EXPR   the named groups of the Go (RE2) expression EXPR, from its
//	             leftmost match, become string fields; unnamed groups are
//	             ignored; a named group that took no part in the match is
//	             left out. Unanchored: write ^…$ to match the whole payload.
//	             At least one named group, names used once.
//	csv:NAME,NAME,...[;sep=X][;numbers]
//	             columns split at X (one byte, or "tab" or \t; default ','),
//	             named by position; "_" skips a column. Fewer columns than
//	             names: mismatch; extra columns: ignored. No quoting. Values
//	             are trimmed of spaces, tabs, CR and LF and are strings, even
//	             numeric-looking ones; with ;numbers a value that is a JSON
//	             number (-1.5e3, 21.43; not 08, +1, .5, NaN) is written as one.
//	json         the payload is one JSON object (valid UTF-8): passed through,
//	             compacted (whitespace between tokens removed).
//	nmea         an NMEA 0183 sentence ($ or !, checksum cut off, not
//	             checked): {"talker":"GP","type":"GGA","fields":["…",…]}
//	             (proprietary P… sentences: talker "P"), plus named fields:
//	               GGA: time, lat, lon, fix_quality, satellites, hdop,
//	                    altitude_m, geoid_sep_m
//	               RMC: time, status, valid, lat, lon, speed_knots,
//	                    course_deg, date, mode
//	               GLL: lat, lon, time, status, valid, mode
//	               VTG: course_deg, course_mag_deg, speed_knots, speed_kmh, mode
//	             time is "hh:mm:ss[.ss]", date "YYYY-MM-DD", lat/lon signed
//	             decimal degrees (S and W negative, 8 decimals at most),
//	             valid a bool (status A); the other numbers keep the
//	             device's digits without leading zeros (08 → 8, 90.00 stays).
//	             A named field whose source is empty or malformed is left out.
//	hex          {"hex":"0a1b…"} (lower case)
//	base64       {"base64":"Chs="} (standard alphabet, padded)
//
// A payload a decoder cannot read (no match, too few columns, not a JSON
// object, not an NMEA sentence) is an error wrapping ErrMismatch, and dst
// is returned unchanged; the caller keeps the frame without fields. hex and
// base64 never fail. Decoders never panic, are safe for concurrent use, and
// always append valid JSON (strings are escaped, bytes that are not UTF-8
// become U+FFFD) or nothing. None allocates per byte of payload, and only
// regex allocates at all (its match indexes, one slice per frame).
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
