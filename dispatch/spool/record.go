package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// On-disk layout (all integers little-endian):
//
//	segment = segMagic record*
//	record  = u32 len(body) | u32 CRC-32C(body) | body
//	body    = u8 version(1 or 2) | id [16]byte | uvarint seq | varint unix seconds |
//	          uvarint nanoseconds (< 1e9) | uvarint len(port) | port |
//	          uvarint len(payload) | payload
//	          [version 2 only: uvarint len(fields) (> 0) | fields]
//
// Version 2 is written only for a frame with decoded fields (Frame.Fields,
// one JSON object); a frame without is written as version 1, byte for byte
// as before fields existed, so spools without fields stay readable by older
// builds. Both versions are read. The body must be consumed exactly:
// trailing bytes make a record corrupt.
const (
	segMagic      = "scbdspl1"
	segHeaderSize = int64(len(segMagic))
	recHeaderSize = 8
	bodyVersion   = 1 // a frame without fields
	bodyVersion2  = 2 // a frame with fields
	// minBodySize is version + id + four one-byte varints + one-byte
	// payload length.
	minBodySize = 1 + 16 + 1 + 1 + 1 + 1 + 1
	// MaxRecordSize bounds one encoded frame (header included). A length
	// field above it is treated as corruption, so it also bounds what a
	// damaged length can make the reader allocate.
	MaxRecordSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errShort means b holds only a prefix of a record: more bytes are needed.
	errShort = errors.New("short record")
	// errBadLength, errBadChecksum and errBadBody mean the bytes at this
	// position are not a valid record.
	errBadLength   = errors.New("bad record length")
	errBadChecksum = errors.New("checksum mismatch")
	errBadBody     = errors.New("bad record body")
)

// recordSize returns the encoded size of f, header included.
func recordSize(f *serialcb.Frame) int {
	sec, nsec := f.ReceivedAt.Unix(), f.ReceivedAt.Nanosecond()
	return recHeaderSize + 1 + 16 +
		uvarintLen(f.Seq) + varintLen(sec) + uvarintLen(uint64(nsec)) +
		uvarintLen(uint64(len(f.Port))) + len(f.Port) +
		uvarintLen(uint64(len(f.Payload))) + len(f.Payload) +
		fieldsSize(f)
}

// fieldsSize is the size of the version 2 tail: 0 without fields.
func fieldsSize(f *serialcb.Frame) int {
	if len(f.Fields) == 0 {
		return 0
	}
	return uvarintLen(uint64(len(f.Fields))) + len(f.Fields)
}

// appendRecord appends the record encoding f to dst.
func appendRecord(dst []byte, f *serialcb.Frame) []byte {
	start := len(dst)
	version := byte(bodyVersion)
	if len(f.Fields) > 0 {
		version = bodyVersion2
	}
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, version)
	dst = append(dst, f.ID[:]...)
	dst = binary.AppendUvarint(dst, f.Seq)
	dst = binary.AppendVarint(dst, f.ReceivedAt.Unix())
	dst = binary.AppendUvarint(dst, uint64(f.ReceivedAt.Nanosecond()))
	dst = binary.AppendUvarint(dst, uint64(len(f.Port)))
	dst = append(dst, f.Port...)
	dst = binary.AppendUvarint(dst, uint64(len(f.Payload)))
	dst = append(dst, f.Payload...)
	if len(f.Fields) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(f.Fields)))
		dst = append(dst, f.Fields...)
	}
	body := dst[start+recHeaderSize:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(body, castagnoli))
	return dst
}

// frameView is a decoded record whose port, payload and fields alias the
// input. fields is nil for a version 1 record.
type frameView struct {
	id      serialcb.ID
	seq     uint64
	sec     int64
	nsec    int64
	port    []byte
	payload []byte
	fields  []byte
}

func (v *frameView) receivedAt() time.Time { return time.Unix(v.sec, v.nsec).UTC() }

// decodeRecord decodes the record at the start of b. It returns the record's
// total size. errShort means b ends inside the record (n > len(b) then
// tells how many bytes the record claims, or 0 if even the header is cut);
// any other error means the bytes cannot be a record. It never panics and never
// allocates.
func decodeRecord(b []byte) (v frameView, n int, err error) {
	if len(b) < recHeaderSize {
		return v, 0, errShort
	}
	size := binary.LittleEndian.Uint32(b)
	if size < minBodySize || size > MaxRecordSize-recHeaderSize {
		return v, 0, errBadLength
	}
	n = recHeaderSize + int(size)
	if len(b) < n {
		return v, n, errShort
	}
	body := b[recHeaderSize:n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return v, n, errBadChecksum
	}
	if err := decodeBody(body, &v); err != nil {
		return v, n, err
	}
	return v, n, nil
}

func decodeBody(b []byte, v *frameView) error {
	if len(b) < 1+16 || b[0] != bodyVersion && b[0] != bodyVersion2 {
		return errBadBody
	}
	version := b[0]
	copy(v.id[:], b[1:17])
	b = b[17:]
	var k int
	if v.seq, k = binary.Uvarint(b); k <= 0 {
		return errBadBody
	}
	b = b[k:]
	if v.sec, k = binary.Varint(b); k <= 0 {
		return errBadBody
	}
	b = b[k:]
	nsec, k := binary.Uvarint(b)
	if k <= 0 || nsec >= 1e9 {
		return errBadBody
	}
	v.nsec = int64(nsec)
	b = b[k:]
	var ok bool
	if v.port, b, ok = lenPrefixed(b); !ok {
		return errBadBody
	}
	if v.payload, b, ok = lenPrefixed(b); !ok {
		return errBadBody
	}
	if version == bodyVersion2 {
		// Fields are never empty in version 2: an empty field would have
		// been written as version 1, so it is not the writer's output.
		if v.fields, b, ok = lenPrefixed(b); !ok || len(v.fields) == 0 {
			return errBadBody
		}
	}
	if len(b) != 0 {
		return errBadBody
	}
	return nil
}

func lenPrefixed(b []byte) (field, rest []byte, ok bool) {
	l, k := binary.Uvarint(b)
	if k <= 0 || l > uint64(len(b)-k) {
		return nil, nil, false
	}
	end := k + int(l)
	return b[k:end:end], b[end:], true
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
