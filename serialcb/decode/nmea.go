package decode

import (
	"strconv"

	"github.com/serialcbd/serialcbd/serialcb/jsontext"
)

// nmeaDecoder reads one NMEA 0183 sentence ($ or ! start). The checksum is
// not checked (that is the validator's job) but it is cut off.
type nmeaDecoder struct{}

// maxNamed is how many data fields the named-field decoders can look at;
// longer sentences still have all their fields in "fields".
const maxNamed = 24

// Append writes {"talker":"GP","type":"GGA","fields":["…",…], named…}.
// The named fields of GGA, RMC, GLL and VTG are listed in the package
// documentation; a named field whose source is empty or malformed is left
// out.
func (nmeaDecoder) Append(dst, payload []byte) ([]byte, error) {
	s := payload
	for len(s) > 0 && (s[len(s)-1] == '\r' || s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	if len(s) < 4 || s[0] != '$' && s[0] != '!' {
		return dst, mismatch("decode nmea: not a sentence starting with $ or !")
	}
	s = s[1:]
	if i := lastIndexByte(s, '*'); i >= 0 {
		s = s[:i]
	}
	addr, rest, hasData := cutByte(s, ',')
	if len(addr) < 3 {
		return dst, mismatch("decode nmea: address field shorter than 3 characters")
	}
	for _, c := range addr {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return dst, mismatch("decode nmea: address field is not upper-case letters and digits")
		}
	}
	talker, typ := addr[:2], addr[2:]
	if addr[0] == 'P' {
		talker, typ = addr[:1], addr[1:]
	}
	dst = append(dst, `{"talker":`...)
	dst = jsontext.AppendString(dst, talker)
	dst = append(dst, `,"type":`...)
	dst = jsontext.AppendString(dst, typ)
	dst = append(dst, `,"fields":[`...)
	var f [maxNamed][]byte
	n := 0
	for more := hasData; more; {
		var field []byte
		field, rest, more = cutByte(rest, ',')
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = jsontext.AppendString(dst, field)
		if n < maxNamed {
			f[n] = field
		}
		n++
	}
	dst = append(dst, ']')
	fs := f[:min(n, maxNamed)]
	if addr[0] != 'P' {
		switch string(typ) {
		case "GGA":
			dst = gga(dst, fs)
		case "RMC":
			dst = rmc(dst, fs)
		case "GLL":
			dst = gll(dst, fs)
		case "VTG":
			dst = vtg(dst, fs)
		}
	}
	return append(dst, '}'), nil
}

// field returns f[i], or nil when the sentence is shorter.
func field(f [][]byte, i int) []byte {
	if i < len(f) {
		return f[i]
	}
	return nil
}

func gga(dst []byte, f [][]byte) []byte {
	dst = appendTime(dst, `,"time":`, field(f, 0))
	dst = appendCoord(dst, `,"lat":`, field(f, 1), field(f, 2), 'N', 'S', 90)
	dst = appendCoord(dst, `,"lon":`, field(f, 3), field(f, 4), 'E', 'W', 180)
	dst = appendNumber(dst, `,"fix_quality":`, field(f, 5))
	dst = appendNumber(dst, `,"satellites":`, field(f, 6))
	dst = appendNumber(dst, `,"hdop":`, field(f, 7))
	dst = appendNumber(dst, `,"altitude_m":`, field(f, 8))
	dst = appendNumber(dst, `,"geoid_sep_m":`, field(f, 10))
	return dst
}

func rmc(dst []byte, f [][]byte) []byte {
	dst = appendTime(dst, `,"time":`, field(f, 0))
	dst = appendStatus(dst, field(f, 1))
	dst = appendCoord(dst, `,"lat":`, field(f, 2), field(f, 3), 'N', 'S', 90)
	dst = appendCoord(dst, `,"lon":`, field(f, 4), field(f, 5), 'E', 'W', 180)
	dst = appendNumber(dst, `,"speed_knots":`, field(f, 6))
	dst = appendNumber(dst, `,"course_deg":`, field(f, 7))
	dst = appendDate(dst, field(f, 8))
	dst = appendText(dst, `,"mode":`, field(f, 11))
	return dst
}

func gll(dst []byte, f [][]byte) []byte {
	dst = appendCoord(dst, `,"lat":`, field(f, 0), field(f, 1), 'N', 'S', 90)
	dst = appendCoord(dst, `,"lon":`, field(f, 2), field(f, 3), 'E', 'W', 180)
	dst = appendTime(dst, `,"time":`, field(f, 4))
	dst = appendStatus(dst, field(f, 5))
	dst = appendText(dst, `,"mode":`, field(f, 6))
	return dst
}

func vtg(dst []byte, f [][]byte) []byte {
	if string(field(f, 1)) != "T" {
		// NMEA before 2.3: course true, course magnetic, knots, km/h,
		// without the unit letters.
		dst = appendNumber(dst, `,"course_deg":`, field(f, 0))
		dst = appendNumber(dst, `,"course_mag_deg":`, field(f, 1))
		dst = appendNumber(dst, `,"speed_knots":`, field(f, 2))
		dst = appendNumber(dst, `,"speed_kmh":`, field(f, 3))
		return dst
	}
	dst = appendNumber(dst, `,"course_deg":`, field(f, 0))
	dst = appendNumber(dst, `,"course_mag_deg":`, field(f, 2))
	dst = appendNumber(dst, `,"speed_knots":`, field(f, 4))
	dst = appendNumber(dst, `,"speed_kmh":`, field(f, 6))
	dst = appendText(dst, `,"mode":`, field(f, 8))
	return dst
}

// appendText writes a non-empty field as a string.
func appendText(dst []byte, key string, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = append(dst, key...)
	return jsontext.AppendString(dst, v)
}

// appendStatus writes "status" and "valid" (status A) for A or V.
func appendStatus(dst []byte, v []byte) []byte {
	switch string(v) {
	case "A":
		return append(dst, `,"status":"A","valid":true`...)
	case "V":
		return append(dst, `,"status":"V","valid":false`...)
	}
	return dst
}

// appendNumber writes a decimal field ([-]digits[.digits]) as a JSON
// number, without the leading zeros NMEA pads with ("08" → 8).
func appendNumber(dst []byte, key string, v []byte) []byte {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	ip, fp, dot := cutByte(v, '.')
	if len(ip)+len(fp) == 0 || !allDigits(ip) || !allDigits(fp) || dot && len(fp) == 0 && len(ip) == 0 {
		return dst
	}
	for len(ip) > 1 && ip[0] == '0' {
		ip = ip[1:]
	}
	dst = append(dst, key...)
	if neg {
		dst = append(dst, '-')
	}
	if len(ip) == 0 {
		dst = append(dst, '0')
	}
	dst = append(dst, ip...)
	if len(fp) > 0 {
		dst = append(dst, '.')
		dst = append(dst, fp...)
	}
	return dst
}

// appendTime writes hhmmss[.sss] as "hh:mm:ss[.sss]".
func appendTime(dst []byte, key string, v []byte) []byte {
	if len(v) < 6 || !allDigits(v[:6]) || v[0] > '2' || v[2] > '5' || v[4] > '6' {
		return dst
	}
	frac := v[6:]
	if len(frac) > 0 && (frac[0] != '.' || !allDigits(frac[1:])) {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '"', v[0], v[1], ':', v[2], v[3], ':', v[4], v[5])
	dst = append(dst, frac...)
	return append(dst, '"')
}

// appendDate writes ddmmyy as "20yy-mm-dd" (19yy for yy ≥ 80).
func appendDate(dst []byte, v []byte) []byte {
	if len(v) != 6 || !allDigits(v) || v[0] > '3' || v[2] > '1' {
		return dst
	}
	century := "20"
	if v[4] >= '8' {
		century = "19"
	}
	dst = append(dst, `,"date":"`...)
	dst = append(dst, century...)
	return append(dst, v[4], v[5], '-', v[2], v[3], '-', v[0], v[1], '"')
}

// appendCoord writes a (d)ddmm.mmmm coordinate with its hemisphere as signed
// decimal degrees (negative for S and W), rounded to 8 decimals (~1 mm).
func appendCoord(dst []byte, key string, v, hemi []byte, pos, neg byte, limit float64) []byte {
	if len(hemi) != 1 || hemi[0] != pos && hemi[0] != neg {
		return dst
	}
	ip, fp, _ := cutByte(v, '.')
	if len(ip) < 3 || len(ip) > 5 || !allDigits(ip) || !allDigits(fp) || len(fp) > 12 {
		return dst
	}
	deg := 0
	for _, c := range ip[:len(ip)-2] {
		deg = deg*10 + int(c-'0')
	}
	minInt := int(ip[len(ip)-2]-'0')*10 + int(ip[len(ip)-1]-'0')
	var frac, scale int64 = 0, 1
	for _, c := range fp {
		frac = frac*10 + int64(c-'0')
		scale *= 10
	}
	minutes := float64(minInt) + float64(frac)/float64(scale)
	if minutes >= 60 {
		return dst
	}
	val := float64(deg) + minutes/60
	if val > limit {
		return dst
	}
	if hemi[0] == neg {
		val = -val
	}
	dst = append(dst, key...)
	start := len(dst)
	dst = strconv.AppendFloat(dst, val, 'f', 8, 64)
	// Trim trailing zeros (and a bare point); "-0" stays a valid number.
	end := len(dst)
	for end > start && dst[end-1] == '0' {
		end--
	}
	if end > start && dst[end-1] == '.' {
		end--
	}
	return dst[:end]
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// cutByte is bytes.Cut for one byte.
func cutByte(s []byte, sep byte) (before, after []byte, found bool) {
	if i := indexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, nil, false
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}
