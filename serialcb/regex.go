package serialcb

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"unicode/utf8"
)

// regexFramer is the Framer returned by Regex.
type regexFramer struct {
	re     *regexp.Regexp
	prefix []byte       // literal every match starts with, or nil
	prog   *syntax.Prog // re's program, to tell whether a match may grow; nil: assume it may
}

var (
	_ Framer      = regexFramer{}
	_ boundaryLen = regexFramer{}
	_ completer   = regexFramer{}
)

// Regex returns a Framer whose frames are the matches of re in the stream;
// the payload is the match. Bytes before a match are noise.
//
// A match that reaches the last buffered byte is final at once when no
// further input could make it longer: `\$GP[^\r\n]*\r\n` and `\d+;` end
// in a terminator their body cannot contain, `a.*?b` is lazy. A match that
// could still grow (`[0-9]+`, greedy `a.*b`, `abc|ab` on "ab", or one
// ending in `$` or `\b`, which the next byte decides) waits for the next
// byte, so a read boundary does not cut it short; at stop the read loop
// delivers it whole (Cutter.FlushComplete). Such a growable match of
// exactly the max bytes is dropped as oversize, as its next byte must fit
// too. Regex assumes leftmost-first matching (regexp.Compile, not
// CompilePOSIX or Longest). Matching is leftmost-first over the buffered bytes: bytes before the
// leftmost match are dropped as noise even if more input could have made an
// earlier match (only alternations like `a.*z|b` can). `^` anchors where
// the previous frame ended, not a line start. Empty matches are noise.
//
// Resynchronisation: when re has a literal prefix, bytes that cannot start
// a match (before the first occurrence of the prefix) are noise at once;
// otherwise unmatched bytes wait until the max. The max is raised to at
// least 16 bytes (see noiseChunk). A frame in progress that
// grows past the max is skipped up to the next occurrence of the literal
// prefix; without a prefix, up to the next match start in the buffer, or
// half the buffer when none starts in it. Only the prefix rule is
// independent of read boundaries: prefer patterns that start with a
// literal. An oversize match is reported as dropped up to the next
// prefix.
func Regex(re *regexp.Regexp) Framer {
	p, _ := re.LiteralPrefix()
	var prefix []byte
	if p != "" {
		prefix = []byte(p)
	}
	f := regexFramer{re: re, prefix: prefix}
	if sre, err := syntax.Parse(re.String(), syntax.Perl); err == nil {
		if prog, err := syntax.Compile(sre.Simplify()); err == nil && len(prog.Inst) <= maxGrowInst {
			f.prog = prog
		}
	}
	return f
}

// Split implements Framer.
func (f regexFramer) Split(buf []byte) (int, []byte) {
	if f.prefix != nil {
		window := buf[:min(len(buf), noiseChunk+len(f.prefix)-1)]
		switch i := bytes.Index(window, f.prefix); {
		case i < 0:
			return max(len(window)-(len(f.prefix)-1), 0), nil
		case i > 0:
			return i, nil
		}
	}
	loc := f.re.FindIndex(buf)
	if loc == nil {
		return 0, nil
	}
	s, e := loc[0], loc[1]
	switch {
	case s > 0:
		return min(s, noiseChunk), nil
	case e >= len(buf) && f.mayGrow(buf[:e]):
		return 0, nil // may grow: wait for more
	case e == 0:
		return 1, nil // empty match
	}
	return e, buf[:e:e]
}

// Skip implements Framer. buf[0] is never a match start: on the first call
// it starts the oversize frame, later it is a byte a previous call kept.
func (f regexFramer) Skip(buf []byte) (int, bool) {
	if f.prefix != nil {
		if len(buf) > 1 {
			if i := bytes.Index(buf[1:], f.prefix); i >= 0 {
				return 1 + i, true
			}
		}
		// Keep len(prefix) bytes: a prefix starting in them after their
		// first byte is found next time.
		return max(len(buf)-len(f.prefix), 0), false
	}
	if len(buf) > 1 {
		if loc := f.re.FindIndex(buf[1:]); loc != nil {
			return 1 + loc[0], true
		}
	}
	return max(len(buf)/2, 1), true
}

// boundaryLen covers noiseChunk and the prefix bytes Skip keeps.
func (f regexFramer) boundaryLen() int { return max(noiseChunk, len(f.prefix)+1) }

// complete implements completer: buf is held whole when it is a match that
// may still grow (Split's wait); it is a frame as it stands.
func (f regexFramer) complete(buf []byte) []byte {
	if loc := f.re.FindIndex(buf); loc != nil && loc[0] == 0 && loc[1] == len(buf) {
		return buf[:len(buf):len(buf)]
	}
	return nil
}

// maxGrowInst bounds the program mayGrow simulates, so its thread lists
// live on the stack; a larger pattern is assumed to be able to grow.
const maxGrowInst = 256

// growList is an ordered set of program counters (a sparse set: no
// clearing between steps).
type growList struct {
	dense  [maxGrowInst]uint16
	sparse [maxGrowInst]uint16
	n      int
}

func (l *growList) has(pc uint32) bool {
	i := l.sparse[pc]
	return int(i) < l.n && uint32(l.dense[i]) == pc
}

func (l *growList) insert(pc uint32) {
	l.sparse[pc] = uint16(l.n)
	l.dense[l.n] = uint16(pc)
	l.n++
}

// mayGrow reports whether more input could make a longer match than m, a
// match starting at the start of the buffer and ending at its end. It runs
// re's program over m as the regexp package's leftmost-first matcher does
// (threads in priority order; a match cuts the threads below it): the
// match may grow when a thread that prefers to consume more is still alive
// above the one that matched, or when an assertion that depends on the
// next byte ($, \b) took part.
func (f regexFramer) mayGrow(m []byte) bool {
	if f.prog == nil {
		return true
	}
	var lists [2]growList
	cur, next := &lists[0], &lists[1]
	unsure := false
	prev := rune(-1)
	r, w := utf8.DecodeRune(m) // RuneError, 1 for invalid bytes, as regexp
	if len(m) == 0 {
		r = -2
	}
	f.addThread(cur, uint32(f.prog.Start), prev, r, &unsure)
	for pos := 0; pos < len(m); pos += w {
		r, w = utf8.DecodeRune(m[pos:])
		after := rune(-2) // unknown: past the buffered bytes
		if pos+w < len(m) {
			after, _ = utf8.DecodeRune(m[pos+w:])
		}
		next.n = 0
		for i := 0; i < cur.n; i++ {
			inst := &f.prog.Inst[cur.dense[i]]
			if inst.Op == syntax.InstMatch {
				break // lower-priority threads are cut
			}
			if consumes(inst, r) {
				f.addThread(next, inst.Out, r, after, &unsure)
			}
		}
		cur, next = next, cur
		prev = r
	}
	if unsure {
		return true
	}
	for i := 0; i < cur.n; i++ {
		switch f.prog.Inst[cur.dense[i]].Op {
		case syntax.InstMatch:
			return false
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			return true
		}
	}
	return true // no thread matched here: the regexp package disagrees; hold
}

// lookahead are the assertions that depend on the rune after the position.
const lookahead = syntax.EmptyEndLine | syntax.EmptyEndText | syntax.EmptyWordBoundary | syntax.EmptyNoWordBoundary

// addThread adds pc and what it leads to without consuming input, in
// priority order. after is -2 when the next rune is not known yet; an
// assertion that needs it sets *unsure.
func (f regexFramer) addThread(l *growList, pc uint32, before, after rune, unsure *bool) {
	if l.has(pc) {
		return
	}
	l.insert(pc)
	inst := &f.prog.Inst[pc]
	switch inst.Op {
	case syntax.InstAlt, syntax.InstAltMatch:
		f.addThread(l, inst.Out, before, after, unsure)
		f.addThread(l, inst.Arg, before, after, unsure)
	case syntax.InstCapture, syntax.InstNop:
		f.addThread(l, inst.Out, before, after, unsure)
	case syntax.InstEmptyWidth:
		op := syntax.EmptyOp(inst.Arg)
		if after == -2 && op&lookahead != 0 {
			*unsure = true
			return
		}
		if syntax.EmptyOpContext(before, after)&op == op {
			f.addThread(l, inst.Out, before, after, unsure)
		}
	}
}

// consumes reports whether the rune instruction inst matches r.
func consumes(inst *syntax.Inst, r rune) bool {
	switch inst.Op {
	case syntax.InstRune, syntax.InstRune1:
		return inst.MatchRune(r)
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}
