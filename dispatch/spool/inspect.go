package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary is what Inspect found in a spool directory.
type Summary struct {
	// Frames is the number of unacknowledged frames: what the sink has
	// still to take.
	Frames uint64
	// Bytes and Segments count the segment files and their size.
	Bytes    int64
	Segments int
	// Oldest and Newest are the earliest and latest received_at of the
	// unacknowledged frames (zero when there are none).
	Oldest, Newest time.Time
	// Damaged counts damaged regions in the segments (an Open would skip
	// or cut them). A torn record at the end of the newest segment is not
	// counted: it is an Append in progress.
	Damaged int
	// Quarantined counts files renamed NAME.corrupt by an earlier Open.
	Quarantined int
}

// Inspect reads the spool in dir without locking it and without changing
// anything, so it can run while a Spool (in this or another process) has
// the directory open: segments deleted meanwhile are ignored, and a torn
// record at the end of the newest segment is taken as an Append in
// progress. The result is a snapshot as good as the moment allows; Open
// remains the authority.
func Inspect(dir string) (Summary, error) {
	var sum Summary
	entries, err := os.ReadDir(dir)
	if err != nil {
		return sum, fmt.Errorf("spool: inspect: %w", err)
	}
	ackSeg, ackOff, ackOK := readAck(filepath.Join(dir, ackFile))
	var ids []uint64
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".corrupt") {
			sum.Quarantined++
			continue
		}
		if id, ok := segmentID(e); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for i, id := range ids {
		// Records ending at or before from are acknowledged. Without an ack
		// file (none written yet, or damaged) every record is waiting.
		from, acked := int64(0), false
		switch {
		case !ackOK:
		case id < ackSeg:
			acked = true
		case id == ackSeg:
			from = ackOff
		}
		path := filepath.Join(dir, fmt.Sprintf("%020d%s", id, segExt))
		newest := i == len(ids)-1
		seg, found, err := inspectFile(path, from, acked, newest)
		if newest {
			// The newest segment may be mapped and written by memory stores,
			// which a concurrent read(2) can see in any order: an Append in
			// progress can look like a damaged record followed by good ones.
			// Real damage is still there when the file has stopped changing.
			for try := 0; err == nil && found && seg.Damaged > 0 && try < 4; try++ {
				again, afound, aerr := inspectFile(path, from, acked, newest)
				if aerr != nil || !afound || bytes.Equal(again.data, seg.data) {
					break
				}
				seg = again
			}
		}
		if err != nil {
			return sum, fmt.Errorf("spool: inspect: %w", err)
		}
		if !found {
			continue // acknowledged or dropped meanwhile
		}
		sum.Segments++
		sum.Bytes += seg.Bytes
		sum.Damaged += seg.Damaged
		sum.Frames += seg.Frames
		if !seg.Oldest.IsZero() && (sum.Oldest.IsZero() || seg.Oldest.Before(sum.Oldest)) {
			sum.Oldest = seg.Oldest
		}
		if seg.Newest.After(sum.Newest) {
			sum.Newest = seg.Newest
		}
	}
	return sum, nil
}

// segSummary is one segment file's part of a Summary, and its contents
// (to tell whether a second read saw the same file).
type segSummary struct {
	Summary
	data []byte
}

// inspectFile reads and inspects one segment file; found is false when it
// no longer exists. An acknowledged segment counts only its bytes.
func inspectFile(path string, from int64, acked, newest bool) (seg segSummary, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return seg, false, nil
	}
	if err != nil {
		return seg, false, err
	}
	seg.data = data
	seg.Bytes = int64(len(data))
	if int64(len(data)) < segHeaderSize || string(data[:segHeaderSize]) != segMagic {
		if !strings.HasPrefix(segMagic, string(data)) {
			seg.Damaged++ // an Open would quarantine it
		}
		return seg, true, nil
	}
	if acked {
		return seg, true, nil
	}
	if end := inspectSegment(data, from, newest, &seg.Summary); end < int64(len(data)) {
		seg.Bytes -= int64(len(data)) - end // a mapped segment's preallocation
	}
	return seg, true, nil
}

// inspectSegment counts the records of one segment that end after from and
// their time range, and returns where its data ends. Damage is handled as
// scanSegment does.
func inspectSegment(data []byte, from int64, newest bool, sum *Summary) (end int64) {
	p := int(segHeaderSize)
	for p < len(data) {
		v, n, err := decodeRecord(data[p:])
		if err == nil {
			p += n
			if int64(p) > from {
				sum.Frames++
				at := v.receivedAt()
				if sum.Oldest.IsZero() || at.Before(sum.Oldest) {
					sum.Oldest = at
				}
				if at.After(sum.Newest) {
					sum.Newest = at
				}
			}
			continue
		}
		if zeroTail(data[p:]) {
			return int64(p) // a mapped segment's preallocation: the clean end
		}
		q, ok := resync(data, p, n)
		if !ok {
			// An Append in progress at the end of the newest segment: a
			// record the file ends inside, or, in a mapped segment, one
			// whose bytes are not all stored yet, zeros after them.
			inProgress := errors.Is(err, errShort) || data[len(data)-1] == 0
			if !newest || !inProgress {
				sum.Damaged++
			}
			return int64(len(data))
		}
		sum.Damaged++
		p = q
	}
	return int64(len(data))
}

// segmentID is the id of a segment file's directory entry, or false for
// anything else.
func segmentID(e os.DirEntry) (uint64, bool) {
	name := e.Name()
	if !e.Type().IsRegular() || !strings.HasSuffix(name, segExt) {
		return 0, false
	}
	id, err := strconv.ParseUint(strings.TrimSuffix(name, segExt), 10, 64)
	return id, err == nil
}
