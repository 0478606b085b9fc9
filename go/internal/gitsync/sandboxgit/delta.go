package sandboxgit

// A git delta is two sizes (the base's, the target's) as little-endian base-128
// varints, then instructions: a byte with the high bit set copies a range of the
// base (bits 0-3 say which offset bytes follow, bits 4-6 which size bytes; a
// size of 0 means 0x10000); a byte 1-127 inserts that many following bytes; 0 is
// reserved. git's patch_delta refuses a delta shorter than 4 bytes.

// deltaMin is git's DELTA_SIZE_MIN.
const deltaMin = 4

// DeltaSizes reads the base and target sizes a delta declares, and where its
// instructions start.
func DeltaSizes(delta []byte) (base, target int64, n int, err error) {
	if len(delta) < deltaMin {
		return 0, 0, 0, hostile("delta of %d bytes is shorter than git accepts", len(delta))
	}
	base, n, err = varint(delta, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	target, n, err = varint(delta, n)
	return base, target, n, err
}

// varint reads a delta header size at delta[i:]; sizes over 2^62 are refused.
func varint(delta []byte, i int) (int64, int, error) {
	var v int64
	for shift := 0; ; shift += 7 {
		if i >= len(delta) || shift > 56 {
			return 0, 0, hostile("delta has a malformed size")
		}
		c := delta[i]
		i++
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i, nil
		}
	}
}

// PatchDelta applies delta to base as git's patch_delta does. The target is
// allocated once, at the size the delta declares, after checking it against
// limit; every instruction is checked to read inside base and to write inside
// the target, and the delta must fill the target exactly.
func PatchDelta(base, delta []byte, limit int64) ([]byte, error) {
	srcSize, dstSize, i, err := DeltaSizes(delta)
	if err != nil {
		return nil, err
	}
	if srcSize != int64(len(base)) {
		return nil, hostile("delta expects a base of %d bytes, not %d", srcSize, len(base))
	}
	if dstSize > limit {
		return nil, tooLarge("an object rebuilt from a delta", dstSize, limit)
	}
	out := make([]byte, 0, dstSize)
	for i < len(delta) {
		cmd := delta[i]
		i++
		switch {
		case cmd&0x80 != 0:
			var off, size uint64
			for b := 0; b < 4; b++ {
				if cmd&(1<<b) != 0 {
					if i >= len(delta) {
						return nil, hostile("delta ends inside an instruction")
					}
					off |= uint64(delta[i]) << (8 * b)
					i++
				}
			}
			for b := 0; b < 3; b++ {
				if cmd&(0x10<<b) != 0 {
					if i >= len(delta) {
						return nil, hostile("delta ends inside an instruction")
					}
					size |= uint64(delta[i]) << (8 * b)
					i++
				}
			}
			if size == 0 {
				size = 0x10000
			}
			if off+size > uint64(len(base)) || size > uint64(cap(out)-len(out)) {
				return nil, hostile("delta copies outside its base or past its target")
			}
			out = append(out, base[off:off+size]...)
		case cmd != 0:
			n := int(cmd)
			if n > len(delta)-i || n > cap(out)-len(out) {
				return nil, hostile("delta inserts past its end or past its target")
			}
			out = append(out, delta[i:i+n]...)
			i += n
		default:
			return nil, hostile("delta uses the reserved instruction 0")
		}
	}
	if int64(len(out)) != dstSize {
		return nil, hostile("delta builds %d bytes, not the %d it declares", len(out), dstSize)
	}
	return out, nil
}
