package spool

import "errors"

// span is a damaged byte range [start, end) of a segment that readers jump
// over.
type span struct{ start, end int64 }

// segScan is what scanning one segment's bytes found.
type segScan struct {
	records uint64 // valid records
	end     int64  // end of the last valid record: the file is cut here
	skips   []span // damaged regions in the middle, followed by valid records
	damage  []scanDamage
	// ackOff is the greatest record boundary <= the requested ack offset,
	// and ackRecords the number of valid records before it.
	ackOff     int64
	ackRecords uint64
}

type scanDamage struct {
	off, length int64
	reason      string
	cut         bool // true: torn tail truncated; false: skipped region
}

// scanSegment walks the records of a whole segment file (magic included,
// already checked). A bad record (bad length, short, checksum or body
// mismatch) is handled like this:
//   - if its length field is plausible and a valid record starts right after
//     it, only that record is damaged: it is skipped;
//   - else the scanner searches byte by byte for the next offset where a
//     valid record starts (resync) and skips the damaged bytes up to it;
//   - if no valid record follows, the damage is a torn tail: it is cut.
//
// ackOff < 0 means no ack offset is wanted.
func scanSegment(data []byte, ackOff int64) segScan {
	sc := segScan{end: segHeaderSize, ackOff: segHeaderSize}
	p := int(segHeaderSize)
	for p < len(data) {
		_, n, err := decodeRecord(data[p:])
		if err == nil {
			p += n
			sc.records++
			sc.end = int64(p)
			if int64(p) <= ackOff {
				sc.ackOff, sc.ackRecords = int64(p), sc.records
			}
			continue
		}
		if zeroTail(data[p:]) {
			break // a mapped segment's preallocation (mapwrite_linux.go): the clean end
		}
		q, ok := resync(data, p, n)
		if !ok {
			sc.damage = append(sc.damage, scanDamage{off: int64(p), length: int64(len(data) - p), reason: reasonOf(err), cut: true})
			break
		}
		sc.skips = append(sc.skips, span{int64(p), int64(q)})
		sc.damage = append(sc.damage, scanDamage{off: int64(p), length: int64(q - p), reason: reasonOf(err)})
		p = q
		if int64(p) <= ackOff {
			sc.ackOff = int64(p)
		}
	}
	return sc
}

// zeroTail reports whether b is all zeros: what is left of a mapped
// segment's preallocation after its last record. Zeros never read as a
// record (a length of 0 is below minBodySize).
func zeroTail(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// resync finds where the next valid record starts after a bad record at p
// whose claimed size is n (0 if unknown).
func resync(data []byte, p, n int) (int, bool) {
	if n > 0 && p+n < len(data) && validAt(data, p+n) {
		return p + n, true
	}
	for q := p + 1; q+recHeaderSize+minBodySize <= len(data); q++ {
		if validAt(data, q) {
			return q, true
		}
	}
	return 0, false
}

func validAt(data []byte, p int) bool {
	_, _, err := decodeRecord(data[p:])
	return err == nil
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, errShort):
		return "torn record (file ends inside it)"
	case errors.Is(err, errBadLength):
		return "bad length field"
	case errors.Is(err, errBadChecksum):
		return "CRC-32C mismatch"
	default:
		return "malformed record body"
	}
}
