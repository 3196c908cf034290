package decode_test

import (
	"testing"

	"github.com/serialcbd/serialcbd/serialcb/decode"
)

// BenchmarkDecode measures each decoder on a typical payload of its kind:
// MB/s of payload and allocations per frame.
func BenchmarkDecode(b *testing.B) {
	for _, bm := range []struct{ name, spec, payload string }{
		{"regex", `regex:^T=(?P<temp>[-0-9.]+) H=(?P<rh>\d+)%$`, "T=21.43 H=44%"},
		{"csv", "csv:ms,temp_c,rh_pct,pressure_hpa,co2_ppm", "100,21.43,44.0,1013.21,613"},
		{"csv-numbers", "csv:ms,temp_c,rh_pct,pressure_hpa,co2_ppm;numbers", "100,21.43,44.0,1013.21,613"},
		{"json", "json", `{"ms": 100, "temp_c": 21.43, "rh_pct": 44.0, "pressure_hpa": 1013.21, "co2_ppm": 613}`},
		{"nmea-gga", "nmea", "$GPGGA,092653.00,4851.5022,N,00217.6689,E,1,08,1.0,36.8,M,47.3,M,,*5B"},
		{"nmea-rmc", "nmea", "$GPRMC,092653.00,A,4851.5022,N,00217.6689,E,12.88,90.00,140326,,,A*55"},
		{"nmea-gsv", "nmea", "$GPGSV,3,1,11,04,72,068,42,05,62,232,41,09,28,121,40,12,40,151,40*76"},
		{"hex-64", "hex", string(make([]byte, 64))},
		{"base64-64", "base64", string(make([]byte, 64))},
	} {
		b.Run(bm.name, func(b *testing.B) {
			d, err := decode.Parse(bm.spec)
			if err != nil {
				b.Fatal(err)
			}
			p := []byte(bm.payload)
			buf := make([]byte, 0, 1024)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = d.Append(buf[:0], p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
