package names

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"my-app", true},
		{"a", true},
		{"app2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a", 200), false},
		{"", false},
		{"a/b", false},
		{"..", false},
		{".", false},
		{"a b", false},
		{"-app", false},
		{"app-", false},
		{"App", false},
		{"app.one", false},
		{"app_one", false},
		{"ä", false},
	} {
		err := Validate(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestFromPath(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/home/u/projects/my-web-app", "my-web-app"},
		{"/home/u/projects/My_Web.App/", "my-web-app"},
		{"/src/--app--", "app"},
		{"/src/app 2", "app-2"},
		{"/src/" + strings.Repeat("x", 100), strings.Repeat("x", 63)},
		{"relative/dir", "dir"},
	} {
		got, err := FromPath(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("FromPath(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	for _, bad := range []string{"/", "/src/___", "/src/日本"} {
		if got, err := FromPath(bad); err == nil {
			t.Errorf("FromPath(%q) = %q; want an error", bad, got)
		}
	}
}
