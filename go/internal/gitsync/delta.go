package gitsync

// Trees are rewritten along the whole path of every changed file, so a history
// of many commits carries many versions of each tree that differ in an entry or
// two. Storing each in full made the pack (and its compression) the bulk of a
// sync; git's fetch avoids this with deltas, and so do we, in the simplest form
// git's format allows: copy the common prefix and suffix of the previous version
// of the same tree written to this pack, insert the middle.

// makeDelta returns a git delta that turns base into target, or nil when it
// would not save at least half. An empty target gets none: its delta would be
// the two sizes alone, shorter than the 4 bytes git's patch_delta accepts
// (DELTA_SIZE_MIN), and git would call the object corrupt.
func makeDelta(base, target []byte) []byte {
	if len(target) == 0 {
		return nil
	}
	p := 0
	for p < len(base) && p < len(target) && base[p] == target[p] {
		p++
	}
	s := 0
	for s < len(base)-p && s < len(target)-p && base[len(base)-1-s] == target[len(target)-1-s] {
		s++
	}
	mid := target[p : len(target)-s]
	if len(mid)*2 > len(target) {
		return nil
	}
	d := appendVarint(nil, len(base))
	d = appendVarint(d, len(target))
	d = appendCopy(d, 0, p)
	for len(mid) > 0 {
		n := min(len(mid), 0x7f)
		d = append(d, byte(n))
		d = append(d, mid[:n]...)
		mid = mid[n:]
	}
	return appendCopy(d, len(base)-s, s)
}

func appendVarint(d []byte, n int) []byte {
	for n >= 0x80 {
		d = append(d, byte(n)|0x80)
		n >>= 7
	}
	return append(d, byte(n))
}

// appendCopy appends copy instructions for base[off:off+n], in chunks of 64 KiB.
func appendCopy(d []byte, off, n int) []byte {
	for n > 0 {
		size := min(n, 0x10000)
		op := byte(0x80)
		var args []byte
		for i := 0; i < 4; i++ {
			if b := byte(off >> (8 * i)); b != 0 {
				op |= 1 << i
				args = append(args, b)
			}
		}
		if size != 0x10000 { // a size of 0 means 0x10000
			for i := 0; i < 3; i++ {
				if b := byte(size >> (8 * i)); b != 0 {
					op |= 0x10 << i
					args = append(args, b)
				}
			}
		}
		d = append(append(d, op), args...)
		off, n = off+size, n-size
	}
	return d
}

// ofsDeltaOffset encodes the distance back to a delta's base as git's pack
// format wants it (a big-endian varint with an offset added per byte).
func ofsDeltaOffset(dist int64) []byte {
	var buf [16]byte
	i := len(buf) - 1
	buf[i] = byte(dist & 0x7f)
	for dist >>= 7; dist > 0; dist >>= 7 {
		dist--
		i--
		buf[i] = 0x80 | byte(dist&0x7f)
	}
	return buf[i:]
}
