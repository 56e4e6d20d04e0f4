package redact

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// secrets are the values that must never survive; each case's input holds
// one or more of them, in one form or another.
var secrets = []string{"SECRET1", "SECRET2", "SE:CR,ET'3"}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		keep     []string // readable parts that must stay
	}{
		{"pass", ":webdav,url='http://h:8/',user=bob,pass=SECRET1:path", []string{":webdav,url='http://h:8/',user=bob,pass=REDACTED:path"}},
		{"password quoted", `:webdav,url=http://h/,password='SE:CR,ET''3',vendor=rclone:p`, []string{"vendor=rclone:p", "url=http://h/"}},
		{"double quoted", `:s3,secret_access_key="SECRET1",access_key_id=AKIA:bucket`, []string{"access_key_id=", ":bucket"}},
		{"doubled quotes", `:yandex,token="{""access_token"":""SECRET1"",""token_type"":""OAuth"",""refresh_token"":""SECRET2""}":dir`, []string{":yandex,token=", ":dir"}},
		{"doubled quotes single", `:yandex,token='{"access_token":"SECRET1","refresh_token":"SECRET2"}':dir`, []string{":dir"}},
		{"json", `token: {"access_token":"SECRET1","expiry":"2030"} refresh_token=SECRET2 done`, []string{"expiry", "done"}},
		{"json doubled free", `bad token {""access_token"":""SECRET1"",""refresh_token"":""SECRET2""} here`, []string{"bad token", "here"}},
		{"go quoted", `destination ":webdav,pass=\"SECRET1\",user=bob:x": failed`, []string{"user=bob:x", "failed"}},
		{"client_secret", ":drive,client_id=abc,client_secret=SECRET1,token=SECRET2:", []string{"client_id=abc"}},
		{"sse", ":s3,sse_customer_key=SECRET1,sse_customer_key_base64=SECRET2,sse_kms_key_id=SE:CR,region=x:b", []string{"region=x:b"}},
		{"session and bearer", ":s3,session_token=SECRET1:b :webdav,bearer_token=SECRET2:c", []string{":b", ":c"}},
		{"headers", `:webdav,url='http://h/',headers='Authorization,Bearer SECRET1':dir`, []string{"headers=", ":dir"}},
		{"headers doubled", `:webdav,headers="Authorization,""Bearer SECRET1""",vendor=other:dir`, []string{"vendor=other:dir"}},
		{"headers unquoted", `:webdav,headers=X-Api-Key,SECRET1:dir`, []string{":dir"}},
		{"bearer free", `401: Authorization: Bearer SECRET1 refused`, []string{"refused", "Authorization"}},
		{"service account", `:drive,service_account_credentials='{"private_key":"SECRET1"}':x`, []string{":x"}},
		{"url userinfo", "https://bob:SECRET1@dav.example.org/x", []string{"https://bob:", "@dav.example.org/x"}},
		{"url escaped userinfo", "http%3A%2F%2Fbob%3ASECRET1%40dav.example.org%2Fx", []string{"bob", "dav.example.org"}},
		{"url query", "https://h.example/hook?token=SECRET1&x=1&access_token=SECRET2", []string{"https://h.example/hook?token=", "&x=1&"}},
		{"url query key sig", "https://h/a?key=SECRET1&sig=SECRET2&X-Amz-Signature=SE:CR", []string{"https://h/a?key="}},
		{"url query apikey", "https://h/a?apikey=SECRET1&auth=SECRET2", []string{"https://h/a?apikey="}},
		{"rclone propfind", `read metadata failed: Propfind "http/127.0.0.1%3A37257/%2Cuser%3Dbob%2Cpass%3DSECRET1%3Adir": unsupported protocol scheme ""`, []string{"user%3Dbob", "%3Adir", "unsupported protocol scheme"}},
		{"double escaped", `GET "http://h/x%252Cpass%253DSECRET1%253Ay"`, []string{"%253Ay"}},
		{"escaped quote", `%2Cpass%3D%27SE%3ACR%2CET%27%273%27%3Adir`, []string{"%3Adir"}},
		{"flag", `--webdav-pass SECRET9 --webdav-pass=SECRET1 --s3-secret-access-key=SECRET2`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := String(tc.in)
			for _, s := range append(secrets, url.QueryEscape(secrets[2]), url.PathEscape(secrets[2]), "SE%3ACR", "CR%2CET") {
				if strings.Contains(got, s) {
					t.Errorf("String(%s)\n = %s\nshows %q", tc.in, got, s)
				}
			}
			if !strings.Contains(got, Mask) {
				t.Errorf("String(%s) = %s: nothing redacted", tc.in, got)
			}
			for _, k := range tc.keep {
				if !strings.Contains(got, k) {
					t.Errorf("String(%s)\n = %s\nlost %q", tc.in, got, k)
				}
			}
		})
	}
}

func TestStringLeavesOrdinaryText(t *testing.T) {
	for _, s := range []string{
		"",
		":webdav,url='http://127.0.0.1:9/',vendor=rclone,user=bob:fireops",
		"keys.signing_key_file: /etc/fireops/signing.key does not exist",
		"destination \"dav\": put chunks/ab/cd: 503 Service Unavailable",
		"https://grafana.example.org/grafana/?orgId=1",
		"a basic check failed",
	} {
		if got := String(s); got != s {
			t.Errorf("String(%q) = %q", s, got)
		}
	}
}

func TestValuesKnown(t *testing.T) {
	remote := ":webdav,url='http://bob:SECRET2@h/',pass='SE:CR,ET''3',headers='Authorization,Bearer SECRET1':dir"
	vals := Values(remote)
	msg := "Propfind \"http/bob%3ASECRET2@h/" + url.PathEscape("SE:CR,ET'3") + "\": got SECRET1 and " + url.QueryEscape("SE:CR,ET'3")
	got := Known(msg, vals)
	for _, s := range append(secrets, url.QueryEscape(secrets[2]), url.PathEscape(secrets[2])) {
		if strings.Contains(got, s) {
			t.Errorf("Known(%s) = %s shows %q (values %q)", msg, got, s, vals)
		}
	}
	if !strings.HasPrefix(got, "Propfind \"http/bob%3A") {
		t.Errorf("Known = %s", got)
	}
}

func TestError(t *testing.T) {
	base := errors.New("open :webdav,pass=SECRET1:x: boom")
	err := Error(base)
	if strings.Contains(err.Error(), "SECRET1") || !errors.Is(err, base) {
		t.Errorf("Error = %v", err)
	}
	if Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	plain := errors.New("nothing to hide")
	if Error(plain) != plain {
		t.Error("Error wrapped an error with nothing to hide")
	}
}

func TestWebhook(t *testing.T) {
	for in, want := range map[string]string{
		"": "",
		"https://hooks.slack.com/services/T0/B0/SECRET1": "https://hooks.slack.com/" + Mask,
		"https://alerts.example.org":                     "https://alerts.example.org",
		"https://u:SECRET1@alerts.example.org":           "https://alerts.example.org/" + Mask,
		"http://h:9/hook?token=SECRET1":                  "http://h:9/" + Mask,
		"::not a url SECRET1":                            Mask,
	} {
		if got := Webhook(in); got != want {
			t.Errorf("Webhook(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"plain text, é and 日本", "plain text, é and 日本"},
		{"two\nlines\r\tand a tab", "two lines  and a tab"},
		{"erase\x1b[2K\x1b[1Aline", `erase\x1b[2K\x1b[1Aline`},
		{"bell\x07 nul\x00 del\x7f", `bell\x07 nul\x00 del\x7f`},
		{"c1 \u009b31m", `c1 \u009b31m`},
		{"rtl \u202eevil\u2066", `rtl \u202eevil\u2066`},
		{"bad utf8 \xff\xfe end", `bad utf8 \xff\xfe end`},
		{"replacement char \ufffd stays", "replacement char \ufffd stays"},
	} {
		if got := Line(c.in); got != c.want {
			t.Errorf("Line(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"plain text, é and 日本", "plain text, é and 日本"},
		{"NAME\tSTATE\nrow\tok\n", "NAME\tSTATE\nrow\tok\n"},
		{"carriage\rreturn", `carriage\x0dreturn`},
		{"title\x1b]0;pwned\x07\x1b[2J", `title\x1b]0;pwned\x07\x1b[2J`},
		{"vtab\v formfeed\f nul\x00 del\x7f", `vtab\x0b formfeed\x0c nul\x00 del\x7f`},
		{"c1 \u009b31m", `c1 \u009b31m`},
		{"rtl \u202eevil\u2066\tcell", "rtl \\u202eevil\\u2066\tcell"},
		{"bad utf8 \xff\xfe end", `bad utf8 \xff\xfe end`},
		{"replacement char \ufffd stays", "replacement char \ufffd stays"},
	} {
		if got := Text(c.in); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
