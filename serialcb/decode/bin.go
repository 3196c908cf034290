package decode

import (
	"encoding/base64"
	"encoding/hex"
	"slices"
)

// hexDecoder shows a binary payload as {"hex":"…"} (lower case).
type hexDecoder struct{}

// Append never fails.
func (hexDecoder) Append(dst, payload []byte) ([]byte, error) {
	dst = slices.Grow(dst, 10+2*len(payload))
	dst = append(dst, `{"hex":"`...)
	dst = hex.AppendEncode(dst, payload)
	return append(dst, `"}`...), nil
}

// base64Decoder shows a binary payload as {"base64":"…"} (standard
// alphabet, padded).
type base64Decoder struct{}

// Append never fails.
func (base64Decoder) Append(dst, payload []byte) ([]byte, error) {
	dst = slices.Grow(dst, 13+base64.StdEncoding.EncodedLen(len(payload)))
	dst = append(dst, `{"base64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, payload)
	return append(dst, `"}`...), nil
}
