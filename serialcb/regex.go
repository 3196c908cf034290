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
	empty  bool         // prog has assertions (^, $, \b): they need the runes around them
	// closure[pc], when prog has no assertions, lists in priority order the
	// rune and match instructions pc leads to without consuming input.
	closure [][]uint16
}

var (
	_ Framer      = regexFramer{}
	_ boundaryLen = regexFramer{}
	_ completer   = regexFramer{}
)

// Regex returns a Framer whose frames are the matches of re in the stream;
// the payload is the match. Bytes before a match are noise.
//
// A match is final as soon as no further input could change it:
// `\$GP[^\r\n]*\r\n` and `\d+;` end in a terminator their body cannot
// contain, `a.*?b` is lazy, so such a frame is delivered the moment its
// last byte is read. A match that could still grow waits for the bytes that
// decide: `[0-9]+` or one ending in `$` or `\b` for the next byte, greedy
// `a.*b` for the next "b" or the end of the buffer's window, `(?:ab)+` on
// "aba" for one more byte. So a read boundary never cuts a match short, and
// at stop the read loop delivers a match still waiting whole
// (Cutter.FlushComplete). A waiting match of exactly the max bytes is
// dropped as oversize, as the bytes that decide must fit too. To tell, the
// framer runs re's program over the buffered bytes as the leftmost-first
// matcher does; it assumes that matcher (regexp.Compile, not CompilePOSIX
// or Longest). A pattern over 256 instructions is not simulated: its
// match is final once a byte follows it. Bytes before the leftmost match are
// dropped as noise even if more input could have made an earlier match
// (only alternations like `a.*z|b` can). `^` anchors where the previous
// frame ended, not a line start. Empty matches are noise.
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
			for _, inst := range prog.Inst {
				f.empty = f.empty || inst.Op == syntax.InstEmptyWidth
			}
			if !f.empty {
				f.closure = closures(prog)
			}
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
	case f.mayGrow(buf, e):
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

// complete implements completer: buf starts with a match Split held
// because it might still grow; with the stream ended, it is a frame as it
// stands.
func (f regexFramer) complete(buf []byte) []byte {
	if loc := f.re.FindIndex(buf); loc != nil && loc[0] == 0 && loc[1] > 0 {
		return buf[:loc[1]:loc[1]]
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

// mayGrow reports whether more input could change the match of re at the
// start of buf, which the regexp package found to end at e: whether, at the
// end of buf, a thread that the leftmost-first matcher prefers to the one
// that matched is still alive. It runs re's program over buf as that
// matcher does (threads in priority order; a match cuts the threads below
// it), stopping as soon as no preferred thread is left. An assertion that
// depends on the byte after buf ($, \b) counts as alive.
func (f regexFramer) mayGrow(buf []byte, e int) bool {
	if f.prog == nil {
		return e >= len(buf) // too large to simulate: the next byte decides
	}
	var lists [2]growList
	cur, next := &lists[0], &lists[1]
	unsure := false
	r, _ := utf8.DecodeRune(buf) // RuneError, 1 for invalid bytes, as regexp
	if len(buf) == 0 {
		r = -2
	}
	f.enter(cur, uint32(f.prog.Start), -1, r, &unsure)
	matched := false
	for pos, w := 0, 0; pos < len(buf); pos += w {
		if r, w = rune(buf[pos]), 1; r >= utf8.RuneSelf {
			r, w = utf8.DecodeRune(buf[pos:])
		}
		after := rune(-2) // unknown: past the buffered bytes
		if f.empty && pos+w < len(buf) {
			after, _ = utf8.DecodeRune(buf[pos+w:])
		}
		next.n = 0
		for i := 0; i < cur.n; i++ {
			inst := &f.prog.Inst[cur.dense[i]]
			if inst.Op == syntax.InstMatch {
				matched = true
				break // lower-priority threads are cut
			}
			if consumes(inst, r) {
				f.enter(next, inst.Out, r, after, &unsure)
			}
		}
		cur, next = next, cur
		if matched && cur.n == 0 && pos+w >= e {
			return false // nothing preferred to the match is left
		}
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
	return !matched // no thread left: the match stands
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

// enter adds pc's threads to l: from the precomputed closure when there
// is one, else by following the program (addThread).
func (f regexFramer) enter(l *growList, pc uint32, before, after rune, unsure *bool) {
	if f.closure == nil {
		f.addThread(l, pc, before, after, unsure)
		return
	}
	for _, q := range f.closure[pc] {
		if !l.has(uint32(q)) {
			l.insert(uint32(q))
		}
	}
}

// closures computes, for each instruction of a program without
// assertions, the rune and match instructions it leads to without
// consuming input, in the order the leftmost-first matcher tries them.
func closures(prog *syntax.Prog) [][]uint16 {
	out := make([][]uint16, len(prog.Inst))
	var seen []bool
	var walk func(pc uint32, acc []uint16) []uint16
	walk = func(pc uint32, acc []uint16) []uint16 {
		if seen[pc] {
			return acc
		}
		seen[pc] = true
		switch inst := &prog.Inst[pc]; inst.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			acc = walk(inst.Out, acc)
			return walk(inst.Arg, acc)
		case syntax.InstCapture, syntax.InstNop:
			return walk(inst.Out, acc)
		case syntax.InstMatch, syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			return append(acc, uint16(pc))
		}
		return acc // fail
	}
	for pc := range prog.Inst {
		seen = make([]bool, len(prog.Inst))
		out[pc] = walk(uint32(pc), nil)
	}
	return out
}

// consumes reports whether the rune instruction inst matches r.
func consumes(inst *syntax.Inst, r rune) bool {
	switch inst.Op {
	case syntax.InstRune1:
		if syntax.Flags(inst.Arg)&syntax.FoldCase == 0 {
			return r == inst.Rune[0]
		}
		return inst.MatchRune(r)
	case syntax.InstRune:
		if syntax.Flags(inst.Arg)&syntax.FoldCase == 0 {
			for i := 0; i+1 < len(inst.Rune); i += 2 {
				if r < inst.Rune[i] {
					return false
				}
				if r <= inst.Rune[i+1] {
					return true
				}
			}
			return len(inst.Rune) == 1 && r == inst.Rune[0]
		}
		return inst.MatchRune(r)
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}
