package sshmux

import "testing"

func TestExclusiveSessions(t *testing.T) {
	for v, want := range map[string]bool{
		"SSH-2.0-dropbear_2022.83":  true,
		"SSH-2.0-dropbear_2020.81":  true,
		"SSH-2.0-dropbear_2024.85":  true,
		"SSH-2.0-dropbear_2024.86":  false,
		"SSH-2.0-dropbear_2025.88":  false,
		"SSH-2.0-dropbear":          true,
		"SSH-2.0-dropbear_x":        true,
		"SSH-2.0-OpenSSH_9.2p1":     false,
		"SSH-2.0-OpenSSH_9.6 extra": false,
		"":                          false,
	} {
		if got := exclusiveSessions([]byte(v)); got != want {
			t.Errorf("exclusiveSessions(%q) = %v; want %v", v, got, want)
		}
	}
}

// FuzzExclusiveSessions: the guest's identification line never makes the
// check panic.
func FuzzExclusiveSessions(f *testing.F) {
	f.Add([]byte("SSH-2.0-dropbear_2022.83"))
	f.Add([]byte("SSH-2.0-dropbear_99999999999999999999.1"))
	f.Fuzz(func(t *testing.T, v []byte) { exclusiveSessions(v) })
}
