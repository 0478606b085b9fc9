package sshconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBlock(t *testing.T) {
	got, err := Block(Host{Name: "app", Port: 2224, User: "sandbox",
		Identity: "/home/u/my keys/50%/client_ed25519", KnownHosts: "/s/known_hosts"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Host keystone-app\n",
		"  Port 2224\n",
		"  User sandbox\n",
		`  IdentityFile "/home/u/my keys/50%%/client_ed25519"` + "\n",
		"  HostKeyAlias keystone-app\n",
		`  UserKnownHostsFile "/s/known_hosts"` + "\n",
		"  GlobalKnownHostsFile /dev/null\n",
		"  StrictHostKeyChecking yes\n",
		"  ForwardAgent no\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("block lacks %q:\n%s", want, got)
		}
	}
	if _, err := Block(Host{Name: "app", Identity: "/a\"b", KnownHosts: "/k"}); !errors.Is(err, errUnquotable) {
		t.Errorf("a path with a quote: err = %v; want errUnquotable", err)
	}
}

func TestKnownHostsLine(t *testing.T) {
	got := KnownHostsLine("app", "ssh-ed25519 AAAAC3Nza keystone-agent")
	if want := "keystone-app ssh-ed25519 AAAAC3Nza\n"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestInstall(t *testing.T) {
	line, err := IncludeLine("/home/u/.config/keystone/agent/ssh_config")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("missing file and directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), ".ssh", "config")
		if changed, err := Install(path, line); err != nil || !changed {
			t.Fatalf("Install = %v, %v; want true, nil", changed, err)
		}
		data, _ := os.ReadFile(path)
		fi, _ := os.Stat(path)
		di, _ := os.Stat(filepath.Dir(path))
		if string(data) != line+"\n" || fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
			t.Errorf("got %q, file %v, dir %v", data, fi.Mode(), di.Mode())
		}
	})
	t.Run("first line, the rest kept byte for byte, mode kept, once", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		own := "Host work\n  User me\n\tForwardAgent yes\nMatch all\n  # mine\n"
		os.WriteFile(path, []byte(own), 0o640)
		if changed, err := Install(path, line); err != nil || !changed {
			t.Fatalf("Install = %v, %v; want true, nil", changed, err)
		}
		for i := 0; i < 2; i++ {
			if changed, err := Install(path, line); err != nil || changed {
				t.Fatalf("Install again = %v, %v; want false, nil", changed, err)
			}
		}
		data, _ := os.ReadFile(path)
		fi, _ := os.Stat(path)
		if string(data) != line+"\n"+own || fi.Mode().Perm() != 0o640 {
			t.Errorf("got %q (%v); want the line, then the user's file unchanged (0640)", data, fi.Mode())
		}
	})
	t.Run("the user's own spelling counts", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config")
		own := "Host *\n\n  include   " + strings.TrimPrefix(line, "Include ") + "  \n"
		os.WriteFile(path, []byte(own), 0o600)
		if changed, err := Install(path, line); err != nil || changed {
			t.Fatalf("Install = %v, %v; want false, nil", changed, err)
		}
	})
	t.Run("a linked config is refused and left alone", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "dotfiles-config")
		os.WriteFile(target, []byte("Host a\n"), 0o600)
		path := filepath.Join(dir, "config")
		os.Symlink(target, path)
		if _, err := Install(path, line); !errors.Is(err, ErrLinked) {
			t.Fatalf("Install = %v; want ErrLinked", err)
		}
		if data, _ := os.ReadFile(target); string(data) != "Host a\n" {
			t.Errorf("the link's target changed: %q", data)
		}
		if fi, _ := os.Lstat(path); fi.Mode()&os.ModeSymlink == 0 {
			t.Error("the link was replaced")
		}
	})
}
