package decode_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/serialcbd/serialcbd/serialcb/decode"
)

// FuzzDecode checks that any spec Parse accepts gives a decoder that never
// panics and, for any payload, either appends exactly one valid JSON object
// or returns an ErrMismatch error with dst unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []struct{ spec, payload string }{
		{"nmea", "$GPGGA,092653.00,4851.5022,N,00217.6689,E,1,08,1.0,36.8,M,47.3,M,,*5B\r\n"},
		{"nmea", "$GPRMC,092653.00,A,4851.5022,N,00217.6689,E,12.88,90.00,140326,,,A*55"},
		{"nmea", "$GNGLL,4404.14066,N,12118.85481,W,171925.00,A,A*66"},
		{"nmea", "$GPVTG,054.7,034.4,005.5,010.2"},
		{"nmea", "!AIVDM,1,1,,B,13u?etPv2;0n:dDPwUM1U1Cb069D,0*24"},
		{"csv:ms,temp,rh;numbers", "100,21.43,44.0"},
		{"csv:a,_,b;sep=;", "1;2;3"},
		{`csv:a,b;sep=\t`, "x\ty"},
		{`regex:^(?P<k>\w+)=(?P<v>.*)$`, "temp=21.5\xff"},
		{"json", `{"a": [1, {"b": "c d"}], "e": null}`},
		{"json", "{\"a\":\"\u2028\"}"},
		{"hex", "\x00\xff"},
		{"base64", "\x00\xff"},
	} {
		f.Add(s.spec, []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, spec string, payload []byte) {
		d, err := decode.Parse(spec)
		if err != nil {
			return
		}
		dst := []byte("pre")
		out, err := d.Append(dst, payload)
		if err != nil {
			if !errors.Is(err, decode.ErrMismatch) {
				t.Fatalf("%q: error %v does not wrap ErrMismatch", spec, err)
			}
			if string(out) != "pre" {
				t.Fatalf("%q: dst changed on error: %q", spec, out)
			}
			return
		}
		if !bytes.HasPrefix(out, dst) {
			t.Fatalf("%q: dst prefix lost", spec)
		}
		obj := out[len(dst):]
		if !json.Valid(obj) || len(obj) == 0 || obj[0] != '{' {
			t.Fatalf("%q on %q: not one JSON object: %q", spec, payload, obj)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(obj, &m); err != nil {
			t.Fatalf("%q: %s: %v", spec, obj, err)
		}
	})
}
