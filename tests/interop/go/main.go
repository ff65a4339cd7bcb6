// Command busgate-interop-franz-go is busgate's interop test client built on
// franz-go (github.com/twmb/franz-go), a Go Kafka client nobody here wrote.
//
// Same command line and result line as the other interop programs (see
// tests/interop/python/interop_common.py):
//
//	PROG BOOTSTRAP PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD SCENARIO ARGS...
//	PROG BOOTSTRAP OAUTHBEARER TOKEN_URL CLIENT_ID SECRET SCENARIO ARGS...
//	PROG BOOTSTRAP NONE SCENARIO ARGS...
//
// Scenarios: produce TOPIC N, consume-group TOPIC GROUP N,
// produce-expect-denied TOPIC, consume-expect-denied TOPIC GROUP. Prints one
// JSON line; exit 0 when the scenario's expectation held, 1 when not, 2 on
// bad usage. BG_INTEROP_TIMEOUT_MS (default 30000) bounds every wait.
// BG_INTEROP_PROPS_FILE: key=value lines with the Java client's names for
// the few settings this client maps (see applyProps); any other key is a
// usage error rather than silently ignored. OAUTHBEARER fetches a
// client-credentials token (HTTP Basic auth) with net/http. Errors are
// reported by the Kafka error name franz-go gives (kerr), e.g.
// TOPIC_AUTHORIZATION_FAILED.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

const clientName = "franz-go"

var scenarios = []string{
	"produce", "consume-group", "produce-expect-denied", "consume-expect-denied",
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// auth holds the parsed security settings.
type auth struct {
	mechanism, user, password, tokenURL, clientID, secret string
}

func (a auth) principal() any {
	switch {
	case a.user != "":
		return a.user
	case a.clientID != "":
		return a.clientID
	}
	return nil
}

func parse(argv []string) (string, auth, []string, error) {
	if len(argv) < 3 {
		return "", auth{}, nil, usageError{"too few arguments"}
	}
	bootstrap, a, rest := argv[0], auth{mechanism: strings.ToUpper(argv[1])}, argv[2:]
	switch a.mechanism {
	case "NONE":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if len(rest) < 2 {
			return "", a, nil, usageError{a.mechanism + " needs USER PASSWORD"}
		}
		a.user, a.password, rest = rest[0], rest[1], rest[2:]
	case "OAUTHBEARER":
		if len(rest) < 3 {
			return "", a, nil, usageError{"OAUTHBEARER needs TOKEN_URL CLIENT_ID SECRET"}
		}
		a.tokenURL, a.clientID, a.secret, rest = rest[0], rest[1], rest[2], rest[3:]
	default:
		return "", a, nil, usageError{"unknown mechanism " + argv[1]}
	}
	if len(rest) == 0 {
		return "", a, nil, usageError{"no scenario"}
	}
	return bootstrap, a, rest, nil
}

func timeout() time.Duration {
	ms, err := strconv.Atoi(os.Getenv("BG_INTEROP_TIMEOUT_MS"))
	if err != nil || ms <= 0 {
		ms = 30000
	}
	return time.Duration(ms) * time.Millisecond
}

// tokenSource fetches OAuth 2.0 client-credentials tokens (RFC 6749 4.4,
// client authentication by HTTP Basic) and reuses one until 30 s before it
// expires.
type tokenSource struct {
	a       auth
	mu      sync.Mutex
	token   string
	expires time.Time
}

func (ts *tokenSource) get(ctx context.Context) (oauth.Auth, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token == "" || time.Now().After(ts.expires.Add(-30*time.Second)) {
		if err := ts.fetch(ctx); err != nil {
			return oauth.Auth{}, err
		}
	}
	return oauth.Auth{Token: ts.token}, nil
}

// formEscape is application/x-www-form-urlencoded escaping with %20 for a
// space, as RFC 6749 2.3.1 asks of the Basic credentials.
func formEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func (ts *tokenSource) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(timeout(), 10*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.a.tokenURL,
		strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		return err
	}
	req.SetBasicAuth(formEscape(ts.a.clientID), formEscape(ts.a.secret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token endpoint answered %s", resp.Status)
	}
	var tok struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		return fmt.Errorf("token endpoint response: %w", err)
	}
	if tok.AccessToken == "" {
		return errors.New("token endpoint response has no access_token")
	}
	if tok.ExpiresIn <= 0 {
		tok.ExpiresIn = 300
	}
	ts.token = tok.AccessToken
	ts.expires = time.Now().Add(time.Duration(tok.ExpiresIn * float64(time.Second)))
	return nil
}

func mechanism(a auth) sasl.Mechanism {
	switch a.mechanism {
	case "PLAIN":
		return plain.Auth{User: a.user, Pass: a.password}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: a.user, Pass: a.password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: a.user, Pass: a.password}.AsSha512Mechanism()
	case "OAUTHBEARER":
		return oauth.Oauth((&tokenSource{a: a}).get)
	}
	return nil
}

// readProps reads BG_INTEROP_PROPS_FILE (key=value lines, # comments).
func readProps() (map[string]string, error) {
	props := map[string]string{}
	path := os.Getenv("BG_INTEROP_PROPS_FILE")
	if path == "" {
		return props, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			props[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return props, sc.Err()
}

// applyProps maps the settings this client understands, by the Java
// client's names; an unknown key is a usage error.
func applyProps(props map[string]string, group bool) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	for k, v := range props {
		switch k {
		case "session.timeout.ms":
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				return nil, usageError{"bad " + k}
			}
			if group {
				opts = append(opts, kgo.SessionTimeout(time.Duration(ms)*time.Millisecond))
			}
		case "group.protocol":
			switch strings.ToLower(v) {
			case "classic":
			case "consumer": // KIP-848: the broker assigns partitions
				if group {
					opts = append(opts, kgo.ServerSideBalancer())
				}
			default:
				return nil, usageError{"bad " + k}
			}
		case "isolation.level":
			switch v {
			case "read_committed":
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			case "read_uncommitted":
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
			default:
				return nil, usageError{"bad " + k}
			}
		case "client.id":
			opts = append(opts, kgo.ClientID(v))
		default:
			return nil, usageError{"BG_INTEROP_PROPS_FILE: this client does not map " + k}
		}
	}
	return opts, nil
}

func logLevel() kgo.LogLevel {
	switch strings.ToLower(os.Getenv("BG_INTEROP_LOG_LEVEL")) {
	case "error":
		return kgo.LogLevelError
	case "info":
		return kgo.LogLevelInfo
	case "debug", "trace":
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

// newClient: a franz-go client for bootstrap and a; extra options come
// after the defaults, the props file's last.
func newClient(bootstrap string, a auth, group bool, extra ...kgo.Opt) (*kgo.Client, error) {
	props, err := readProps()
	if err != nil {
		return nil, err
	}
	fromProps, err := applyProps(props, group)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ClientID("busgate-interop-franz-go"),
		kgo.DialTimeout(min(timeout(), 10*time.Second)),
		kgo.RetryTimeout(timeout()),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, logLevel(), nil)),
	}
	if m := mechanism(a); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	opts = append(opts, extra...)
	return kgo.NewClient(append(opts, fromProps...)...)
}

// value is the record value every interop client writes: JSON with PII-like
// fields, byte for byte as interop_common.value.
func value(seq int) []byte {
	return []byte(fmt.Sprintf(`{"seq":%d,"client":"%s","customer":{"email":"user%d@example.com"},`+
		`"card":{"number":"4111111111111111"}}`, seq, clientName, seq))
}

// recordError puts the error's name and message into out; true when it is
// an authorization failure. A Kafka error is named as kerr names it.
func recordError(out map[string]any, err error) bool {
	out["message"] = err.Error()
	var ke *kerr.Error
	if errors.As(err, &ke) {
		out["error"] = ke.Message
		return ke == kerr.TopicAuthorizationFailed || ke == kerr.GroupAuthorizationFailed ||
			ke == kerr.ClusterAuthorizationFailed || ke == kerr.TransactionalIDAuthorizationFailed
	}
	out["error"] = fmt.Sprintf("%T", err)
	return false
}

func produce(bootstrap string, a auth, out map[string]any, topic string, n int) (bool, error) {
	out["topic"] = topic
	cl, err := newClient(bootstrap, a, false, kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(timeout()))
	if err != nil {
		return false, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout())
	defer cancel()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k-%d", i)), Value: value(i)}
	}
	acked, parts, firstErr := 0, map[int32]bool{}, error(nil)
	for _, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err != nil {
			if firstErr == nil {
				firstErr = r.Err
			}
			continue
		}
		acked++
		parts[r.Record.Partition] = true
	}
	partitions := make([]int, 0, len(parts))
	for p := range parts {
		partitions = append(partitions, int(p))
	}
	sort.Ints(partitions)
	out["produced"], out["partitions"] = acked, partitions
	if firstErr != nil {
		recordError(out, firstErr)
	}
	return acked == n, nil
}

func produceExpectDenied(bootstrap string, a auth, out map[string]any, topic string) (bool, error) {
	out["topic"] = topic
	cl, err := newClient(bootstrap, a, false, kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(timeout()))
	if err != nil {
		return false, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout())
	defer cancel()
	rec := &kgo.Record{Topic: topic, Key: []byte("k"), Value: value(0)}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return recordError(out, err), nil
	}
	out["error"] = nil
	return false, nil
}

// groupSession: a group consumer of topic and a context bounded by the
// interop timeout; done closes both.
func groupSession(bootstrap string, a auth, topic, group string) (
	*kgo.Client, context.Context, func(), error) {
	cl, err := groupClient(bootstrap, a, topic, group)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout())
	return cl, ctx, func() { cancel(); cl.Close() }, nil
}

func groupClient(bootstrap string, a auth, topic, group string) (*kgo.Client, error) {
	return newClient(bootstrap, a, true,
		kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(group),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(10*time.Second))
}

func consumeGroup(bootstrap string, a auth, out map[string]any,
	topic, group string, n int) (bool, error) {
	out["topic"], out["group"] = topic, group
	cl, ctx, done, err := groupSession(bootstrap, a, topic, group)
	if err != nil {
		return false, err
	}
	defer done()
	got, sample := 0, []string{}
	defer func() { out["consumed"], out["values"] = got, sample }()
	for got < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return false, fe.Err
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			if len(sample) < 5 {
				sample = append(sample, string(r.Value))
			}
		})
	}
	if got > 0 {
		cctx, ccancel := context.WithTimeout(context.Background(), timeout())
		defer ccancel()
		if err := cl.CommitUncommittedOffsets(cctx); err != nil {
			return false, err
		}
		out["committed"] = true
	}
	return got >= n, nil
}

func consumeExpectDenied(bootstrap string, a auth, out map[string]any,
	topic, group string) (bool, error) {
	out["topic"], out["group"] = topic, group
	got := 0
	defer func() { out["consumed"] = got }()
	cl, ctx, done, err := groupSession(bootstrap, a, topic, group)
	if err != nil {
		return false, err
	}
	defer done()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		got += fs.NumRecords()
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return recordError(out, fe.Err), nil
			}
		}
	}
	out["error"] = nil
	return false, nil
}

func run(bootstrap string, a auth, args []string, out map[string]any) (bool, error) {
	arg := func(i int) string {
		if i >= len(args) {
			panic(usageError{"scenario " + args[0] + " needs more arguments"})
		}
		return args[i]
	}
	count := func(i int) int {
		n, err := strconv.Atoi(arg(i))
		if err != nil || n < 1 {
			panic(usageError{"N must be a number >= 1"})
		}
		return n
	}
	switch args[0] {
	case "produce":
		return produce(bootstrap, a, out, arg(1), count(2))
	case "consume-group":
		return consumeGroup(bootstrap, a, out, arg(1), arg(2), count(3))
	case "produce-expect-denied":
		return produceExpectDenied(bootstrap, a, out, arg(1))
	case "consume-expect-denied":
		return consumeExpectDenied(bootstrap, a, out, arg(1), arg(2))
	}
	panic(usageError{"unknown scenario " + args[0]})
}

// runMain runs the command line into out; a usage error comes back as such.
func runMain(out map[string]any) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			u, isUsage := r.(usageError)
			if !isUsage {
				panic(r)
			}
			ok, err = false, u
		}
	}()
	bootstrap, a, args, err := parse(os.Args[1:])
	if err != nil {
		return false, err
	}
	out["mechanism"], out["principal"], out["scenario"] = a.mechanism, a.principal(), args[0]
	return run(bootstrap, a, args, out)
}

func main() {
	out := map[string]any{"client": clientName}
	ok, err := runMain(out)
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintf(os.Stderr, "usage: %s BOOTSTRAP MECHANISM CREDENTIALS... SCENARIO ARGS...\n"+
			"  scenarios: %s\nerror: %s\n",
			filepath.Base(os.Args[0]), strings.Join(scenarios, " | "), u.msg)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", clientName, err)
		if _, set := out["error"]; !set {
			recordError(out, err)
		}
		ok = false
	}
	out["ok"] = ok
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	if !ok {
		os.Exit(1)
	}
}
