package decode_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/serialcb/decode"
)

func TestDecoders(t *testing.T) {
	tests := []struct {
		name, spec, payload, want string
	}{
		{"regex named groups", `regex:^T=(?P<temp>[-0-9.]+) H=(?P<rh>\d+)(%)?$`, "T=-3.5 H=40%", `{"temp":"-3.5","rh":"40"}`},
		{"regex unanchored first match", `regex:id=(?P<id>\w+)`, "x id=a1 id=b2", `{"id":"a1"}`},
		{"regex group not in match left out", `regex:^(?P<a>a)?(?P<b>b)$`, "b", `{"b":"b"}`},
		{"regex escapes and invalid utf-8", `regex:^(?P<v>.*)$`, "q\"\\\t\x01\xff\u2028", `{"v":"q\"\\\t\u0001\ufffd\u2028"}`},
		{"csv strings", "csv:ms,temp_c,rh_pct", "100,21.43,44.0\r", `{"ms":"100","temp_c":"21.43","rh_pct":"44.0"}`},
		{"csv extra columns ignored", "csv:a,b", "1,2,3,4", `{"a":"1","b":"2"}`},
		{"csv skip column and trim", "csv:_,b", " x , y ", `{"b":"y"}`},
		{"csv numbers", "csv:a,b,c,d,e;numbers", "-1.5e3,08,abc,,0", `{"a":-1.5e3,"b":"08","c":"abc","d":"","e":0}`},
		{"csv sep semicolon", "csv:a,b;sep=;", "1;2", `{"a":"1","b":"2"}`},
		{"csv sep tab numbers", `csv:a,b;sep=\t;numbers`, "1\t 2", `{"a":1,"b":2}`},
		{"csv sep tab word", "csv:a,b;numbers;sep=tab", "1\t2", `{"a":1,"b":2}`},
		{"csv empty payload one name", "csv:a", "", `{"a":""}`},
		{"json compacted", "json", " { \"a\" : [1, 2 ], \"b\":\"x y\\\" z\" }\r\n", `{"a":[1,2],"b":"x y\" z"}`},
		{"hex", "hex", "\x00\xb5b", `{"hex":"00b562"}`},
		{"base64", "base64", "\x00\xb5b", `{"base64":"ALVi"}`},
		{"nmea GGA", "nmea", "$GPGGA,092653.00,4851.5022,N,00217.6689,E,1,08,1.0,36.8,M,47.3,M,,*5B\r\n",
			`{"talker":"GP","type":"GGA","fields":["092653.00","4851.5022","N","00217.6689","E","1","08","1.0","36.8","M","47.3","M","",""],` +
				`"time":"09:26:53.00","lat":48.85837,"lon":2.29448167,"fix_quality":1,"satellites":8,"hdop":1.0,"altitude_m":36.8,"geoid_sep_m":47.3}`},
		{"nmea GGA south west no fix fields", "nmea", "$GNGGA,171926.00,4404.14063,S,12118.85478,W,0,,,,,,,,*44",
			`{"talker":"GN","type":"GGA","fields":["171926.00","4404.14063","S","12118.85478","W","0","","","","","","","",""],` +
				`"time":"17:19:26.00","lat":-44.0690105,"lon":-121.31424633,"fix_quality":0}`},
		{"nmea RMC", "nmea", "$GPRMC,092653.00,A,4851.5022,N,00217.6689,E,12.88,90.00,140326,,,A*55",
			`{"talker":"GP","type":"RMC","fields":["092653.00","A","4851.5022","N","00217.6689","E","12.88","90.00","140326","","","A"],` +
				`"time":"09:26:53.00","status":"A","valid":true,"lat":48.85837,"lon":2.29448167,"speed_knots":12.88,"course_deg":90.00,"date":"2026-03-14","mode":"A"}`},
		{"nmea RMC void", "nmea", "$GPRMC,,V,,,,,,,,,,N*53",
			`{"talker":"GP","type":"RMC","fields":["","V","","","","","","","","","","N"],"status":"V","valid":false,"mode":"N"}`},
		{"nmea GLL", "nmea", "$GNGLL,4404.14066,N,12118.85481,W,171925.00,A,A*66",
			`{"talker":"GN","type":"GLL","fields":["4404.14066","N","12118.85481","W","171925.00","A","A"],` +
				`"lat":44.069011,"lon":-121.31424683,"time":"17:19:25.00","status":"A","valid":true,"mode":"A"}`},
		{"nmea VTG", "nmea", "$GPVTG,90.00,T,,M,12.88,N,23.85,K,A*0B",
			`{"talker":"GP","type":"VTG","fields":["90.00","T","","M","12.88","N","23.85","K","A"],"course_deg":90.00,"speed_knots":12.88,"speed_kmh":23.85,"mode":"A"}`},
		{"nmea VTG before 2.3", "nmea", "$GPVTG,054.7,034.4,005.5,010.2",
			`{"talker":"GP","type":"VTG","fields":["054.7","034.4","005.5","010.2"],"course_deg":54.7,"course_mag_deg":34.4,"speed_knots":5.5,"speed_kmh":10.2}`},
		{"nmea other sentence raw fields only", "nmea", "$GPGSA,A,3,04,05,,1.6*3A",
			`{"talker":"GP","type":"GSA","fields":["A","3","04","05","","1.6"]}`},
		{"nmea proprietary", "nmea", "$PUBX,00,081350.00*7A", `{"talker":"P","type":"UBX","fields":["00","081350.00"]}`},
		{"nmea AIS and no data", "nmea", "!AIVDM", `{"talker":"AI","type":"VDM","fields":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decode.Parse(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("prefix")
			got, err := d.Append(prefix, []byte(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("dst prefix lost: %q", got)
			}
			fields := got[len(prefix):]
			if string(fields) != tt.want {
				t.Errorf("got  %s\nwant %s", fields, tt.want)
			}
			if !json.Valid(fields) {
				t.Errorf("invalid JSON %s", fields)
			}
		})
	}
}

// The numbers are rounded to 8 decimals with trailing zeros cut.
func TestNMEACoordinates(t *testing.T) {
	d, _ := decode.Parse("nmea")
	out, err := d.Append(nil, []byte("$GPGLL,0000.0000,S,18000.000,E"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["lat"] != -0.0 || m["lon"] != 180.0 {
		t.Errorf("lat %v lon %v in %s", m["lat"], m["lon"], out)
	}
	// Out of range or malformed: left out, the frame still decodes.
	for _, p := range []string{"$GPGLL,9100.0,N,18100.0,E", "$GPGLL,4861.0,N,1x.0,E", "$GPGLL,4851.5,X,00217.6,Q"} {
		out, err := d.Append(nil, []byte(p))
		if err != nil || bytes.Contains(out, []byte(`"lat"`)) || bytes.Contains(out, []byte(`"lon"`)) {
			t.Errorf("%s: %s %v", p, out, err)
		}
	}
}

func TestMismatch(t *testing.T) {
	tests := []struct{ spec, payload string }{
		{`regex:^(?P<a>\d+)$`, "x"},
		{"csv:a,b,c", "1,2"},
		{"csv:a,b", ""},
		{"json", "[1,2]"},
		{"json", `{"a":}`},
		{"json", "{\"a\":\"\xff\"}"},
		{"json", ""},
		{"nmea", "GPGGA,1"},
		{"nmea", "$G"},
		{"nmea", "$gpgga,1"},
		{"nmea", "$GP,1"},
	}
	for _, tt := range tests {
		d, err := decode.Parse(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte(tt.payload)
		dst := []byte("keep")
		got, err := d.Append(dst, payload)
		if !errors.Is(err, decode.ErrMismatch) {
			t.Errorf("%s %q: err %v, want ErrMismatch", tt.spec, tt.payload, err)
		}
		if string(got) != "keep" {
			t.Errorf("%s %q: dst changed to %q", tt.spec, tt.payload, got)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"", "empty spec"},
		{"xml", "unknown kind"},
		{"regex:", "missing expression"},
		{"regex:(", "missing closing )"},
		{"regex:^(\\d+)$", "no named group"},
		{"csv", "missing column names"},
		{"csv:a,,b", "empty column name"},
		{"csv:a,a", "used twice"},
		{"csv:_,_", "no column names"},
		{"csv:a;sep=", "needs one character"},
		{"csv:a;sep=ab", "one character"},
		{"csv:a;sep=\"", "cannot separate"},
		{"csv:a;nums", "unknown option"},
		{"json:x", "takes no argument"},
		{"nmea:GGA", "takes no argument"},
	} {
		_, err := decode.Parse(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tt.spec, err, tt.want)
		}
	}
}

// Decoders allocate nothing when dst has room (regex: its match indexes).
func TestAllocs(t *testing.T) {
	for _, tt := range []struct {
		spec, payload string
		max           float64
	}{
		{"csv:ms,temp,rh,p,co2;numbers", "100,21.43,44.0,1013.21,613", 0},
		{"json", `{"a": 1, "b": "x"}`, 0},
		{"nmea", "$GPGGA,092653.00,4851.5022,N,00217.6689,E,1,08,1.0,36.8,M,47.3,M,,*5B", 0},
		{"nmea", "$GPRMC,092653.00,A,4851.5022,N,00217.6689,E,12.88,90.00,140326,,,A*55", 0},
		{"hex", "\x00\x01\x02", 0},
		{"base64", "\x00\x01\x02", 0},
		{`regex:^T=(?P<t>[0-9.]+)$`, "T=21.5", 1},
	} {
		d, err := decode.Parse(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 1024)
		p := []byte(tt.payload)
		got := testing.AllocsPerRun(100, func() { buf, _ = d.Append(buf[:0], p) })
		if got > tt.max {
			t.Errorf("%s: %v allocs per frame, want ≤ %v", tt.spec, got, tt.max)
		}
	}
}
