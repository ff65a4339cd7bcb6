/* busgate audit tail|replay: reads audit events back for people.
 *
 * Sources, by configuration: the Kafka topic audit.kafka_topic (a librdkafka
 * consumer with busgate's upstream credential, manual assignment of every
 * partition from the beginning, no offsets committed), else the JSON-lines
 * file audit.file; in both cases followed by the events still waiting in
 * audit.spool_dir (not yet delivered). --from kafka|file|spool picks one.
 * At-least-once delivery means an event may be read twice: both commands
 * drop repeats by event_id. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit_avro.h"
#include "audit/audit_spool.h"
#include "broker/cli.h"
#include "broker/config.h"
#include "broker/config_kafka_client.h"
#include "broker/util_net.h"

#define BG_CLI_AUDIT_IDLE_MS 15000 /* without --follow: give up on a silent source */
#define BG_CLI_AUDIT_METADATA_MS 10000 /* the topic's partitions, asked at the start */
#define BG_CLI_AUDIT_REFRESH_MS 5000   /* --follow: how often added partitions are looked for */
/* Without -c: the file this variable names, else the installed one. */
#define BG_CLI_AUDIT_CONFIG_ENV "BUSGATE_CONFIG"
#define BG_CLI_AUDIT_CONFIG_DEFAULT "/etc/busgate/busgate.yaml"

typedef struct bg_cli_audit_s {
    const char *session, *sub, *from;
    int json, follow, replay;
    /* seen event ids (dedup); a small open-addressing set */
    char **ids;
    size_t nids, cap;
    /* replay: the session's events */
    json_t **evs;
    size_t nevs, evcap;
} bg_cli_audit_t;

static volatile sig_atomic_t bg_cli_audit__stop;

static void bg_cli_audit__on_signal(int sig)
{
    (void)sig;
    bg_cli_audit__stop = 1;
}

static uint64_t bg_cli_audit__hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* Ids remembered for dedup before the set starts over: repeats (the same
 * event delivered again after a spool drain) arrive close to the first copy,
 * and `tail --follow` must not grow without bound. */
#define BG_CLI_AUDIT__MAX_IDS (1u << 20)

/* 1 when id was not seen before (and remembers it), 0 for a repeat. */
static int bg_cli_audit__first(bg_cli_audit_t *c, const char *id)
{
    if (c->nids >= BG_CLI_AUDIT__MAX_IDS) {
        for (size_t i = 0; i < c->cap; i++) {
            free(c->ids[i]);
            c->ids[i] = NULL;
        }
        c->nids = 0;
    }
    if (c->nids * 2 >= c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        char **n = calloc(ncap, sizeof *n);
        if (!n)
            return 1; /* no dedup rather than no output */
        for (size_t i = 0; i < c->cap; i++)
            if (c->ids[i]) {
                size_t j = bg_cli_audit__hash(c->ids[i]) & (ncap - 1);
                while (n[j])
                    j = (j + 1) & (ncap - 1);
                n[j] = c->ids[i];
            }
        free(c->ids);
        c->ids = n;
        c->cap = ncap;
    }
    size_t j = bg_cli_audit__hash(id) & (c->cap - 1);
    for (; c->ids[j]; j = (j + 1) & (c->cap - 1))
        if (strcmp(c->ids[j], id) == 0)
            return 0;
    c->ids[j] = strdup(id);
    c->nids++;
    return 1;
}

/* ---- formatting ---- */

static const char *bg_cli_audit__str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static long long bg_cli_audit__int(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void bg_cli_audit__time(json_t *ev, char *out, size_t cap)
{
    long long ms = bg_cli_audit__int(ev, "time_ms");
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || !gmtime_r(&s, &tm)) { /* a damaged record: say what it holds */
        snprintf(out, cap, "time_ms=%lld", ms);
        return;
    }
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03lldZ", ms % 1000);
}

static void bg_cli_audit__duration(long long us, char *out, size_t cap)
{
    if (us < 1000)
        snprintf(out, cap, "%lldus", us);
    else if (us < 1000000)
        snprintf(out, cap, "%.1fms", (double)us / 1000.0);
    else
        snprintf(out, cap, "%.1fs", (double)us / 1e6);
}

/* "alice (groups a,b; issuer I; token J)" into out. */
static void bg_cli_audit__principal(json_t *p, int full, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "%s", p ? bg_cli_audit__str(p, "sub") : "");
    if (!full || !p || n >= cap)
        return;
    json_t *g = json_object_get(p, "groups"), *v;
    size_t i;
    n += (size_t)snprintf(out + n, cap - n, " (groups ");
    json_array_foreach(g, i, v)
    {
        if (n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "",
                                  json_is_string(v) ? json_string_value(v) : "?");
    }
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "%s; issuer %s", i ? "" : "-",
                              bg_cli_audit__str(p, "issuer"));
    if (n < cap && json_object_get(p, "token_id"))
        n += (size_t)snprintf(out + n, cap - n, "; token %s", bg_cli_audit__str(p, "token_id"));
    if (n < cap)
        snprintf(out + n, cap - n, ")");
}

/* "Produce v9 write kafka:topic:orders -> allow (rule 'r' f:26) 0 1.2ms"; an
 * audit-mode rule reported over an enforced one: "-> deny [audit mode, would
 * deny] (audit rule 'a' f:30; enforced by 'e' f:26)" (also when busgate's
 * own reason then set the effect: the detail says which); busgate's own
 * reason over a rule: "-> deny (busgate; the policy would allow by rule 'r'
 * f:26)", not "(rule 'r' ...)", which read as the rule's deny. */
static void bg_cli_audit__decision(FILE *f, json_t *ev)
{
    json_t *api = json_object_get(ev, "api"), *res = json_object_get(ev, "resources"), *r;
    json_t *d = json_object_get(ev, "decision"), *out = json_object_get(ev, "result");
    json_t *m = json_object_get(ev, "masking"), *ap = json_object_get(ev, "approval");
    size_t i;
    fprintf(f, "%s", api ? bg_cli_audit__str(api, "name") : "-");
    if (api && json_object_get(api, "version"))
        fprintf(f, " v%lld", bg_cli_audit__int(api, "version"));
    fprintf(f, " %s ", json_object_get(ev, "verb") ? bg_cli_audit__str(ev, "verb") : "-");
    json_array_foreach(res, i, r)
    {
        fprintf(f, "%s%s:%s", i ? "," : "", bg_cli_audit__str(r, "type"),
                bg_cli_audit__str(r, "name"));
    }
    fprintf(f, "%s -> %s", i ? "" : "-", d ? bg_cli_audit__str(d, "effect") : "?");
    if (d && strcmp(bg_cli_audit__str(d, "mode"), "audit") == 0)
        fprintf(f, " [audit mode, would %s]", bg_cli_audit__str(d, "would"));
    json_t *enf = d ? json_object_get(d, "enforced") : NULL;
    int by_busgate = d && strcmp(bg_cli_audit__str(d, "by"), "busgate") == 0;
    if (d && json_object_get(d, "rule") && enf) /* an audit-mode rule over an enforced one */
        fprintf(f, " (audit rule '%s' %s:%lld; enforced by '%s' %s:%lld)",
                bg_cli_audit__str(d, "rule"), bg_cli_audit__str(d, "rule_file"),
                bg_cli_audit__int(d, "rule_line"), bg_cli_audit__str(enf, "rule"),
                bg_cli_audit__str(enf, "rule_file"), bg_cli_audit__int(enf, "rule_line"));
    else if (by_busgate && json_object_get(d, "rule")) /* busgate's reason over the policy's rule */
        fprintf(f, " (busgate; the policy would %s by rule '%s' %s:%lld)",
                bg_cli_audit__str(d, "would"), bg_cli_audit__str(d, "rule"),
                bg_cli_audit__str(d, "rule_file"), bg_cli_audit__int(d, "rule_line"));
    else if (d && json_object_get(d, "rule"))
        fprintf(f, " (rule '%s' %s:%lld)", bg_cli_audit__str(d, "rule"),
                bg_cli_audit__str(d, "rule_file"), bg_cli_audit__int(d, "rule_line"));
    else if (by_busgate)
        fprintf(f, " (busgate)"); /* decided by busgate itself; why is in the detail */
    else if (d)
        fprintf(f, " (default)");
    if (m)
        fprintf(f, " masked %lld field(s) in %lld record(s)", bg_cli_audit__int(m, "fields"),
                bg_cli_audit__int(m, "records"));
    if (ap)
        fprintf(f, " approval %s %s", bg_cli_audit__str(ap, "id"), bg_cli_audit__str(ap, "state"));
    if (out && bg_cli_audit__int(out, "records") > 0) /* produced or published */
        fprintf(f, " %lld record(s)", bg_cli_audit__int(out, "records"));
    if (out) {
        fprintf(f, " %lld%s%s", bg_cli_audit__int(out, "error_code"),
                json_object_get(out, "error_name") ? " " : "",
                bg_cli_audit__str(out, "error_name"));
        char lat[32];
        if (json_object_get(out, "latency_us")) { /* absent: not measured (AMQP) */
            bg_cli_audit__duration(bg_cli_audit__int(out, "latency_us"), lat, sizeof lat);
            fprintf(f, " %s", lat);
        }
    }
}

static void bg_cli_audit__ended(FILE *f, json_t *ev)
{
    json_t *r = json_object_get(ev, "result");
    char dur[32];
    fprintf(f, "ended: %lld bytes in, %lld bytes out, %lld request(s)",
            r ? bg_cli_audit__int(r, "bytes_in") : 0, r ? bg_cli_audit__int(r, "bytes_out") : 0,
            r ? bg_cli_audit__int(r, "records") : 0);
    if (r && json_object_get(r, "latency_us")) { /* absent: not recorded */
        bg_cli_audit__duration(bg_cli_audit__int(r, "latency_us"), dur, sizeof dur);
        fprintf(f, ", %s", dur);
    }
}

/* The kind-specific part of a line, shared by tail and replay. */
static void bg_cli_audit__body(FILE *f, json_t *ev, int replay)
{
    const char *kind = bg_cli_audit__str(ev, "kind"), *detail = bg_cli_audit__str(ev, "detail");
    char who[1024];
    json_t *client = json_object_get(ev, "client");
    if (strcmp(kind, "decision") == 0) {
        bg_cli_audit__decision(f, ev);
    } else if (strcmp(kind, "session_start") == 0) {
        bg_cli_audit__principal(json_object_get(ev, "principal"), 1, who, sizeof who);
        if (*detail)
            fprintf(f, "%s as %s", detail, who);
        else
            fprintf(f, "connected from %s, authenticated as %s", bg_cli_audit__str(ev, "peer"), who);
        if (client)
            fprintf(f, " client '%s' %s %s", bg_cli_audit__str(client, "id"),
                    bg_cli_audit__str(client, "software_name"),
                    bg_cli_audit__str(client, "software_version"));
        return;
    } else if (strcmp(kind, "session_end") == 0) {
        bg_cli_audit__ended(f, ev);
    } else if (strcmp(kind, "auth_failure") == 0) {
        fprintf(f, "authentication failed from %s: %s", bg_cli_audit__str(ev, "peer"),
                bg_cli_audit__str(ev, "auth_failure_reason"));
        return;
    } else {
        json_t *ap = json_object_get(ev, "approval");
        fprintf(f, "%s", kind);
        if (ap)
            fprintf(f, " approval %s %s", bg_cli_audit__str(ap, "id"), bg_cli_audit__str(ap, "state"));
    }
    if (*detail && (!replay || strcmp(kind, "session_start") != 0))
        fprintf(f, " (%s)", detail);
}

/* "#seq", and " part k/n" on a part of an event busgate split (too large
 * for one record: each part has a slice of its resources). */
static void bg_cli_audit__seq(FILE *f, json_t *ev)
{
    fprintf(f, "#%lld", bg_cli_audit__int(ev, "seq"));
    if (json_object_get(ev, "parts"))
        fprintf(f, " part %lld/%lld", bg_cli_audit__int(ev, "part"),
                bg_cli_audit__int(ev, "parts"));
}

/* One line: time protocol session #seq [part k/n] sub body. */
static void bg_cli_audit__line(FILE *f, json_t *ev)
{
    char t[64], who[256];
    bg_cli_audit__time(ev, t, sizeof t);
    bg_cli_audit__principal(json_object_get(ev, "principal"), 0, who, sizeof who);
    const char *proto = bg_cli_audit__str(ev, "protocol"), *sess = bg_cli_audit__str(ev, "session_id");
    fprintf(f, "%s %s %.8s ", t, *proto ? proto : "-", *sess ? sess : "-");
    bg_cli_audit__seq(f, ev);
    fprintf(f, " %s %s ", *who ? who : "-", bg_cli_audit__str(ev, "kind"));
    bg_cli_audit__body(f, ev, 0);
    fputc('\n', f);
}

/* ---- per event ---- */

static int bg_cli_audit__wanted(const bg_cli_audit_t *c, json_t *ev)
{
    const char *sess = bg_cli_audit__str(ev, "session_id");
    if (c->session && strcmp(sess, c->session) != 0 &&
        strncmp(sess, c->session, strlen(c->session)) != 0)
        return 0;
    if (c->sub) {
        json_t *p = json_object_get(ev, "principal");
        if (!p || strcmp(bg_cli_audit__str(p, "sub"), c->sub) != 0)
            return 0;
    }
    return 1;
}

/* Applies bg_cli_visible to every string in a parsed event (its
 * nesting is bounded by the JSON parser's depth limit). */
static void bg_cli_audit__defang(json_t *j)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_string(j)) {
        char *o = bg_cli_visible(json_string_value(j), json_string_length(j));
        if (o)
            json_string_set(j, o);
        free(o);
    } else if (json_is_object(j)) {
        json_object_foreach(j, k, v)
            bg_cli_audit__defang(v);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            bg_cli_audit__defang(v);
    }
}

/* Handles one raw JSON event from any source. */
static void bg_cli_audit__event(bg_cli_audit_t *c, const char *raw, size_t len)
{
    json_t *ev = json_loadb(raw, len, JSON_ALLOW_NUL, NULL); /* names may hold NUL */
    if (!ev || !json_is_object(ev)) {
        fprintf(stderr, "busgate audit: skipping a malformed event\n");
        json_decref(ev);
        return;
    }
    const char *id = bg_cli_audit__str(ev, "event_id");
    if (!bg_cli_audit__wanted(c, ev) || (*id && !bg_cli_audit__first(c, id))) {
        json_decref(ev);
        return;
    }
    if (!c->json)
        bg_cli_audit__defang(ev); /* readable lines only; --json stays exact */
    if (c->replay) {
        if (c->nevs == c->evcap) {
            size_t ncap = c->evcap ? c->evcap * 2 : 64;
            json_t **n = realloc(c->evs, ncap * sizeof *n);
            if (!n) {
                json_decref(ev);
                return;
            }
            c->evs = n;
            c->evcap = ncap;
        }
        c->evs[c->nevs++] = ev;
        return;
    }
    if (c->json)
        printf("%.*s\n", (int)len, raw);
    else
        bg_cli_audit__line(stdout, ev);
    fflush(stdout);
    json_decref(ev);
}

/* ---- sources ---- */

/* tail --follow at the end of f: when the file was truncated (copy-truncate
 * rotation) or another file took its path (inode changed), reading starts
 * again at the beginning of what is at path now, said on stderr. Before, it
 * waited past the end of a truncated file for ever. Returns the stream to
 * read (f, or the new file's), *at the offset to read from. */
static FILE *bg_cli_audit__reopened(FILE *f, const char *path, long *at)
{
    struct stat open_st, path_st;
    if (fstat(fileno(f), &open_st) != 0)
        return f;
    if (stat(path, &path_st) == 0 &&
        (path_st.st_ino != open_st.st_ino || path_st.st_dev != open_st.st_dev)) {
        FILE *nf = fopen(path, "r"); /* until it opens, the old file is read on */
        if (!nf)
            return f;
        fprintf(stderr, "busgate audit: %s was replaced; reading the new file from its start\n",
                path);
        fclose(f);
        *at = 0;
        return nf;
    }
    if (open_st.st_size < (off_t)*at) {
        fprintf(stderr, "busgate audit: %s was truncated; reading it again from its start\n",
                path);
        *at = 0;
    }
    return f;
}

/* JSON-lines file; with follow, keeps reading what is appended. */
static int bg_cli_audit__from_file(bg_cli_audit_t *c, const char *path, int follow)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "busgate audit: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    while (!bg_cli_audit__stop) {
        long at = ftell(f);
        ssize_t n = getline(&line, &cap, f);
        if (n > 0 && line[n - 1] == '\n') {
            if (n > 1)
                bg_cli_audit__event(c, line, (size_t)n - 1);
            continue;
        }
        if (!follow)
            break; /* a last line without newline is being written: not yet an event */
        clearerr(f);
        f = bg_cli_audit__reopened(f, path, &at);
        fseek(f, at, SEEK_SET);
        usleep(200000);
    }
    free(line);
    fclose(f);
    return 0;
}

typedef struct bg_cli_audit_scan_s {
    bg_cli_audit_t *c;
    const uint8_t *buf; /* the bytes scanned: the segment from the ack position on */
    size_t len;
    size_t base;  /* where buf begins in the segment (offsets said are the segment's) */
    int newest;   /* the segment busgate may be appending to */
    uint32_t seg; /* its number: messages name the file (spool-NNNNNN.seg) */
} bg_cli_audit_scan_t;

/* One record: payload [u16 key len][key][JSON]. A record whose CRC holds
 * but that carries no event (its key reaches its end) is said, as damage
 * is: skipped unsaid, it would hide an undelivered event. */
static int bg_cli_audit__spool_scan_rec(void *arg, const uint8_t *p, size_t n, size_t off)
{
    bg_cli_audit_scan_t *s = arg;
    size_t klen = n < 2 ? 0 : (size_t)p[0] | (size_t)p[1] << 8;
    if (n < 2 || klen + 2 >= n)
        fprintf(stderr,
                "busgate audit: spool: spool-%06u.seg: skipped a record without an event at "
                "offset %zu\n",
                (unsigned)s->seg, s->base + off);
    else
        bg_cli_audit__event(s->c, (const char *)p + 2 + klen, n - 2 - klen);
    return 0;
}

static void bg_cli_audit__spool_bad(void *arg, size_t off, size_t len)
{
    bg_cli_audit_scan_t *s = arg;
    /* An append caught half-way, or cut by a crash: only the end of the
     * newest segment, and only what could be one frame's beginning (damage
     * of megabytes is no append in progress). */
    if (s->newest && off + len == s->len && bg_audit_spool_torn(s->buf + off, len))
        fprintf(stderr,
                "busgate audit: spool: spool-%06u.seg: the last %zu byte(s) of the newest "
                "segment are not a whole record yet (being written, or cut by a crash)\n",
                (unsigned)s->seg, len);
    else
        fprintf(stderr,
                "busgate audit: spool: spool-%06u.seg: skipped %zu corrupt byte(s) at offset "
                "%zu\n",
                (unsigned)s->seg, len, s->base + off);
}

/* Loads segment path whole into *buf (malloc'ed, NULL when empty), its
 * size in *size. 1 when it is gone (drained and deleted since the listing:
 * nothing to show), -1 after saying why it cannot be read (a segment
 * skipped in silence would hide undelivered events), 0 when loaded. */
static int bg_cli_audit__load_seg(const char *path, uint8_t **buf, size_t *size)
{
    struct stat st;
    const char *why = NULL;
    *buf = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0 || fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_size > 0 && !(*buf = malloc((size_t)st.st_size)))
        why = "out of memory";
    /* Short reads end early: busgate truncates a failed append back. */
    while (!why && *size < (size_t)st.st_size) {
        ssize_t r = pread(fd, *buf + *size, (size_t)st.st_size - *size, (off_t)*size);
        if (r < 0)
            why = strerror(errno);
        if (r <= 0)
            break;
        *size += (size_t)r;
    }
    if (fd >= 0)
        close(fd);
    if (!why)
        return 0;
    fprintf(stderr, "busgate audit: spool segment %s: %s\n", path, why);
    free(*buf);
    *buf = NULL;
    return -1;
}

/* Reads the events after the spool's ack position (not delivered yet), then
 * the dead-letter file beside it (events the primary refused for good).
 * -1 when the directory, a segment or the dead-letter file cannot be read
 * (the others are still shown). */
static int bg_cli_audit__from_spool(bg_cli_audit_t *c, const char *dir)
{
    char path[4096];
    uint32_t aseg = 0, hi, *segs;
    uint64_t aoff = 0;
    size_t nsegs;
    /* The segments on disk, not the range between the first and the last:
     * a stray name may make that wide (see bg_audit_spool_segs). */
    if (bg_audit_spool_segs(dir, &segs, &nsegs) != 0) {
        /* busgate creates the directory at start-up, so a missing one is a
         * wrong path or another host's spool, not an empty spool */
        int missing = errno == ENOENT;
        fprintf(stderr, "busgate audit: spool %s: %s%s\n", dir, strerror(errno),
                missing ? " (busgate creates it at start-up; --from kafka|file reads without it)"
                        : "");
        return -1;
    }
    hi = nsegs ? segs[nsegs - 1] : 0;
    /* No position, a torn one, or an old-format one past every segment
     * (it may be stale): show everything. */
    int t = bg_audit_spool_read_ack(dir, &aseg, &aoff);
    if (t == 0 || (t == 2 && hi && aseg > hi))
        aseg = 0, aoff = 0;
    /* Segments before the acknowledged one were delivered (their deletion
     * may be pending). */
    int rc = 0;
    for (size_t i = 0; i < nsegs && !bg_cli_audit__stop; i++) {
        uint32_t seg = segs[i];
        uint8_t *buf;
        size_t size;
        if (seg < aseg)
            continue;
        snprintf(path, sizeof path, "%s/spool-%06u.seg", dir, (unsigned)seg);
        int got = bg_cli_audit__load_seg(path, &buf, &size);
        if (got < 0)
            rc = -1;
        if (got == 0 && size > 0) {
            size_t from = seg == aseg && aoff <= (unsigned long long)size ? (size_t)aoff : 0;
            bg_cli_audit_scan_t sc = {c, buf + from, size - from, from, seg == hi, seg};
            bg_audit_spool_scan(sc.buf, sc.len, bg_cli_audit__spool_scan_rec,
                                bg_cli_audit__spool_bad, &sc);
        }
        free(buf);
    }
    free(segs);
    snprintf(path, sizeof path, "%s/rejected.jsonl", dir);
    if (access(path, F_OK) == 0 && !bg_cli_audit__stop && bg_cli_audit__from_file(c, path, 0) != 0)
        rc = -1;
    return rc;
}

/* librdkafka's last log line (error level: log_level 3), kept to explain
 * busgate's own message when the topic cannot be reached. Its own lines
 * ("%3|...|FAIL|...") would otherwise go to stderr, once a second while
 * it retries, before busgate says anything; the daemon likewise routes
 * them (into its log). Written from librdkafka's threads, hence the lock. */
static pthread_mutex_t bg_cli_audit__rdlog_lock = PTHREAD_MUTEX_INITIALIZER;
static char bg_cli_audit__rdlog[512];

static void bg_cli_audit__rdlog_cb(const rd_kafka_t *rk, int level, const char *fac,
                                   const char *buf)
{
    (void)rk;
    (void)level;
    pthread_mutex_lock(&bg_cli_audit__rdlog_lock);
    snprintf(bg_cli_audit__rdlog, sizeof bg_cli_audit__rdlog, "%s: %s", fac, buf);
    pthread_mutex_unlock(&bg_cli_audit__rdlog_lock);
}

/* Prints " (librdkafka: LINE)" after a message when librdkafka logged one. */
static void bg_cli_audit__print_rdlog(void)
{
    pthread_mutex_lock(&bg_cli_audit__rdlog_lock);
    if (*bg_cli_audit__rdlog) {
        fputs(" (librdkafka: ", stderr);
        bg_cli_print_visible(stderr, bg_cli_audit__rdlog);
        fputs(")", stderr);
    }
    pthread_mutex_unlock(&bg_cli_audit__rdlog_lock);
}

static int bg_cli_audit__set(rd_kafka_conf_t *rc, const char *k, const char *v)
{
    char why[256];
    if (!v)
        return 0;
    if (rd_kafka_conf_set(rc, k, v, why, sizeof why) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "busgate audit: %s: %s\n", k, why); /* never the value: a password */
        return -1;
    }
    return 0;
}

/* A consumer with busgate's upstream settings (as the audit producer). */
static rd_kafka_t *bg_cli_audit__consumer(const bg_config_t *cfg)
{
    char why[512], group[64];
    bg_config_kafka_client_t kcc;
    if (bg_config_kafka_client(&cfg->kafka, &kcc) != 0) {
        bg_config_kafka_client_clear(&kcc);
        fprintf(stderr, "busgate audit: out of memory\n");
        return NULL;
    }
    snprintf(group, sizeof group, "busgate-audit-reader-%ld", (long)getpid());
    rd_kafka_conf_t *rc = rd_kafka_conf_new();
    int bad = bg_cli_audit__set(rc, "group.id", group) ||
              bg_cli_audit__set(rc, "enable.auto.commit", "false") ||
              bg_cli_audit__set(rc, "enable.partition.eof", "true") ||
              bg_cli_audit__set(rc, "log_level", "3");
    for (size_t i = 0; !bad && i < kcc.n; i++)
        bad = bg_cli_audit__set(rc, kcc.kv[2 * i], kcc.kv[2 * i + 1]);
    bg_config_kafka_client_clear(&kcc); /* rd_kafka_conf_set copied the values */
    if (bad) {
        rd_kafka_conf_destroy(rc);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(rc, bg_cli_audit__rdlog_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, rc, why, sizeof why);
    if (!rk) {
        fprintf(stderr, "busgate audit: %s\n", why);
        rd_kafka_conf_destroy(rc);
    }
    return rk;
}

/* How many partitions topic has, or -1 (said why on stderr unless quiet)
 * within timeout_ms. */
static int bg_cli_audit__partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int quiet)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    int n = -1;
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        if (!quiet) {
            fprintf(stderr, "busgate audit: topic %s: %s", topic,
                    rd_kafka_err2str(e ? e
                                       : md->topic_cnt ? md->topics[0].err
                                                       : RD_KAFKA_RESP_ERR_UNKNOWN));
            bg_cli_audit__print_rdlog();
            fputs("\n", stderr);
        }
    } else {
        n = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    return n;
}

/* Adds partitions [from, to) of topic to the assignment, each from its
 * beginning; 0 or -1. */
static int bg_cli_audit__assign(rd_kafka_t *rk, const char *topic, int from, int to)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(to - from);
    for (int i = from; i < to; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *err = rd_kafka_incremental_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (!err)
        return 0;
    fprintf(stderr, "busgate audit: topic %s: %s\n", topic, rd_kafka_error_string(err));
    rd_kafka_error_destroy(err);
    return -1;
}

/* One topic message: JSON as is, Avro (audit.format: avro) decoded to the
 * same JSON first. */
static void bg_cli_audit__message(bg_cli_audit_t *c, bg_audit_avro_t *av, const void *p, size_t n)
{
    if (!av) {
        bg_cli_audit__event(c, p, n);
        return;
    }
    char *json = bg_audit_avro_decode(av, p, n);
    if (json)
        bg_cli_audit__event(c, json, strlen(json));
    else
        fprintf(stderr, "busgate audit: skipping a malformed event\n");
    free(json);
}

static int bg_cli_audit__from_kafka(bg_cli_audit_t *c, const bg_config_t *cfg, int follow)
{
    bg_audit_avro_t *av = NULL;
    if (cfg->audit.format == BG_AUDIT_AVRO) {
        char err[256];
        int32_t id = cfg->audit.avro_schema_id > 0 ? cfg->audit.avro_schema_id : -1;
        if (!(av = bg_audit_avro_new(id, err, sizeof err))) {
            fprintf(stderr, "busgate audit: %s\n", err);
            return -1;
        }
    }
    rd_kafka_t *rk = bg_cli_audit__consumer(cfg);
    if (!rk) {
        bg_audit_avro_free(av);
        return -1;
    }
    const char *topic = cfg->audit.kafka_topic;
    int parts = bg_cli_audit__partitions(rk, topic, BG_CLI_AUDIT_METADATA_MS, 0), eofs = 0, rc = 0;
    if (parts > 0 && bg_cli_audit__assign(rk, topic, 0, parts) != 0)
        parts = -1;
    /* End of partition is reported again each time a partition catches up
     * with new events: count each partition once. */
    unsigned char *at_end = parts > 0 ? calloc((size_t)parts, 1) : NULL;
    if (parts > 0 && !at_end)
        parts = -1;
    int64_t idle_until = bg_util_now_ms() + BG_CLI_AUDIT_IDLE_MS;
    int64_t refresh_at = bg_util_now_ms() + BG_CLI_AUDIT_REFRESH_MS;
    int errs = 0; /* errors since the last progress */
    while (parts > 0 && !bg_cli_audit__stop && (follow || eofs < parts)) {
        /* --follow: partitions added to the topic later are read too (from
         * their beginning), as a busgate keyed by session spreads over them. */
        if (follow && bg_util_now_ms() >= refresh_at) {
            refresh_at = bg_util_now_ms() + BG_CLI_AUDIT_REFRESH_MS;
            int now = bg_cli_audit__partitions(rk, topic, BG_CLI_AUDIT_REFRESH_MS / 2, 1);
            unsigned char *grown = now > parts ? realloc(at_end, (size_t)now) : NULL;
            if (grown && bg_cli_audit__assign(rk, topic, parts, now) == 0) {
                memset(grown + parts, 0, (size_t)(now - parts));
                parts = now;
            }
            if (grown)
                at_end = grown;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        /* Only progress (an event, a partition's end) restarts the wait:
         * librdkafka may report an error again and again, and restarting
         * on each kept `tail` from ever giving up. */
        if (m && (!m->err || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
            idle_until = bg_util_now_ms() + BG_CLI_AUDIT_IDLE_MS;
            errs = 0;
        } else if (!follow && bg_util_now_ms() > idle_until) {
            fprintf(stderr, "busgate audit: %s from the topic; stopping",
                    errs || m ? "only errors" : "no answer");
            bg_cli_audit__print_rdlog();
            fputs("\n", stderr);
            rc = -1;
            if (m)
                rd_kafka_message_destroy(m);
            break;
        }
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < parts && !at_end[m->partition]) {
                at_end[m->partition] = 1;
                eofs++;
            }
        } else if (m->err) {
            fprintf(stderr, "busgate audit: %s\n", rd_kafka_message_errstr(m));
            errs++;
        } else {
            bg_cli_audit__message(c, av, m->payload, m->len);
        }
        rd_kafka_message_destroy(m);
    }
    free(at_end);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    bg_audit_avro_free(av);
    return parts < 0 ? -1 : rc;
}

/* Reads the configured sources in order. */
static int bg_cli_audit__read(bg_cli_audit_t *c, const bg_config_t *cfg)
{
    const bg_config_audit_t *a = &cfg->audit;
    const char *from = c->from ? c->from : a->kafka_topic ? "kafka" : a->file ? "file" : "spool";
    int rc;
    if (strcmp(from, "kafka") == 0 && a->kafka_topic)
        rc = bg_cli_audit__from_kafka(c, cfg, c->follow);
    else if (strcmp(from, "file") == 0 && a->file)
        rc = bg_cli_audit__from_file(c, a->file, c->follow);
    else if (strcmp(from, "spool") == 0 && a->spool_dir)
        return bg_cli_audit__from_spool(c, a->spool_dir);
    else {
        static const char *const keys[] = {"kafka", "audit.kafka_topic", "file", "audit.file",
                                           "spool", "audit.spool_dir"};
        const char *key = keys[1];
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i += 2)
            if (strcmp(from, keys[i]) == 0)
                key = keys[i + 1];
        fprintf(stderr, "busgate audit: --from %s: %s is not set in the configuration\n", from,
                key);
        return -1;
    }
    /* Events not yet delivered to the topic/file are still in the spool,
     * shown also when the primary failed (they may be why); a spool that
     * cannot be read fails the command as the primary would. */
    if (!c->from && a->spool_dir && !bg_cli_audit__stop &&
        bg_cli_audit__from_spool(c, a->spool_dir) != 0)
        rc = -1;
    return rc;
}

/* ---- replay ---- */

/* seq, then time, then part: the parts of a split event share seq and
 * time and are read in any order (spool after topic, several partitions). */
static int bg_cli_audit__by_seq(const void *x, const void *y)
{
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    static const char *const keys[] = {"seq", "time_ms", "part"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        long long va = bg_cli_audit__int(a, keys[i]), vb = bg_cli_audit__int(b, keys[i]);
        if (va != vb)
            return va < vb ? -1 : 1;
    }
    return 0;
}

/* A replay names one session: a prefix that matches several is refused
 * (naming the first of them) rather than merged into one timeline. 0 when
 * the events are of one session. */
static int bg_cli_audit__one_session(const bg_cli_audit_t *c)
{
    const char *seen[8];
    size_t nseen = 0, more = 0;
    for (size_t i = 0; i < c->nevs; i++) {
        const char *sid = bg_cli_audit__str(c->evs[i], "session_id");
        size_t k = 0;
        while (k < nseen && strcmp(seen[k], sid) != 0)
            k++;
        if (k < nseen)
            continue;
        if (nseen < sizeof seen / sizeof seen[0])
            seen[nseen++] = sid;
        else
            more = 1;
    }
    if (nseen == 1)
        return 0;
    fprintf(stderr, "busgate audit: %s names several sessions:", c->session);
    for (size_t k = 0; k < nseen; k++)
        fprintf(stderr, " %s", seen[k]);
    fprintf(stderr, "%s\n", more ? " ..." : "");
    return -1;
}

/* replay --json: the events alone, one JSON object per line and no header,
 * so the output feeds jq or any JSON-lines reader as it is (each event
 * carries its session_id, protocol and instance itself). */
static void bg_cli_audit__timeline_json(const bg_cli_audit_t *c)
{
    for (size_t i = 0; i < c->nevs; i++) {
        char *s = json_dumps(c->evs[i], JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
    }
}

static void bg_cli_audit__timeline(bg_cli_audit_t *c)
{
    qsort(c->evs, c->nevs, sizeof *c->evs, bg_cli_audit__by_seq);
    if (c->json) {
        bg_cli_audit__timeline_json(c);
        return;
    }
    json_t *first = c->evs[0];
    printf("session %s (%s, instance %s, %zu event(s))\n", bg_cli_audit__str(first, "session_id"),
           bg_cli_audit__str(first, "protocol"), bg_cli_audit__str(first, "instance"), c->nevs);
    for (size_t i = 0; i < c->nevs; i++) {
        char t[64];
        bg_cli_audit__time(c->evs[i], t, sizeof t);
        printf("%s ", t);
        bg_cli_audit__seq(stdout, c->evs[i]);
        putchar(' ');
        bg_cli_audit__body(stdout, c->evs[i], 1);
        putchar('\n');
    }
}

static void bg_cli_audit__free(bg_cli_audit_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        free(c->ids[i]);
    free(c->ids);
    for (size_t i = 0; i < c->nevs; i++)
        json_decref(c->evs[i]);
    free(c->evs);
}

static int bg_cli_audit__usage(void)
{
    fprintf(stderr, "usage: busgate audit tail [-c FILE] [--follow] [--session ID] [--sub S] [--json]\n"
                    "                          [--from kafka|file|spool]\n"
                    "       busgate audit replay [-c FILE] [--json] [--from kafka|file|spool] SESSION\n"
                    "without -c: $" BG_CLI_AUDIT_CONFIG_ENV ", else " BG_CLI_AUDIT_CONFIG_DEFAULT "\n");
    return 2;
}

/* Says what is wrong with the command line (first line, on stderr);
 * returns -1 for bg_cli_audit__args. */
static int bg_cli_audit__bad(const char *what, const char *arg)
{
    fprintf(stderr, "busgate audit: %s%s%s%s\n", what, arg ? " '" : "", arg ? arg : "",
            arg ? "'" : "");
    return -1;
}

/* Where the value of option o (its first n bytes) goes: --session, --sub
 * and --from each take one value; NULL for any other word. */
static const char **bg_cli_audit__slot(bg_cli_audit_t *c, const char *o, size_t n)
{
    return n == 9 && memcmp(o, "--session", n) == 0 ? &c->session
           : n == 5 && memcmp(o, "--sub", n) == 0   ? &c->sub
           : n == 6 && memcmp(o, "--from", n) == 0  ? &c->from
                                                    : NULL;
}

/* An option written --NAME=VALUE, as getopt_long takes it in the other
 * commands: 1 when o is one of the value options in that form (its value
 * stored), 0 when o is not in that form, -1 after saying what is wrong. */
static int bg_cli_audit__inline(bg_cli_audit_t *c, const char *o)
{
    const char *eq = strncmp(o, "--", 2) == 0 ? strchr(o, '=') : NULL;
    if (!eq)
        return 0;
    const char **slot = bg_cli_audit__slot(c, o, (size_t)(eq - o));
    if (!slot)
        return bg_cli_audit__bad("unknown option", o);
    if (*slot) {
        char name[16];
        snprintf(name, sizeof name, "%.*s", (int)(eq - o), o);
        bg_cli_once("audit", name, 1);
        return -1;
    }
    if (!eq[1])
        return bg_cli_audit__bad("missing the value of", o);
    *slot = eq + 1;
    return 1;
}

/* Parses the options after "tail"/"replay"; returns 0, or -1 after saying
 * what is wrong. An option that takes one value (-c too) is refused when
 * given twice, rather than one of the two values taken unsaid. */
static int bg_cli_audit__args(bg_cli_audit_t *c, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *before = path, **slot = bg_cli_audit__slot(c, o, strlen(o));
        int more = i + 1 < argc, conf = bg_cli_config_opt(argc, argv, &i, &path), inl;
        if (conf > 0 && before)
            return bg_cli_audit__bad("-c given twice", NULL);
        if (conf > 0)
            continue; /* read again by bg_cli_config_arg */
        if ((inl = bg_cli_audit__inline(c, o)) != 0) {
            if (inl < 0)
                return -1;
            continue;
        }
        if (slot && more && *slot) {
            bg_cli_once("audit", o, 1);
            return -1;
        }
        if (strcmp(o, "--follow") == 0 || strcmp(o, "-f") == 0)
            c->follow = 1;
        else if (strcmp(o, "--json") == 0)
            c->json = 1;
        else if (slot && more)
            *slot = argv[++i];
        else if (c->replay && o[0] != '-' && !c->session)
            c->session = o;
        else if (conf < 0 || slot)
            return bg_cli_audit__bad("missing the value of", o);
        else
            return bg_cli_audit__bad(o[0] == '-' ? "unknown option" : "unexpected argument", o);
    }
    if (c->replay && !c->session)
        return bg_cli_audit__bad("replay: name the SESSION", NULL);
    if (c->replay && (c->follow || c->sub))
        return bg_cli_audit__bad("replay takes neither --follow nor --sub", NULL);
    /* An unknown source is bad usage (exit 2), not a source that cannot be
     * read (exit 1, for a known one the configuration lacks). */
    if (c->from && strcmp(c->from, "kafka") != 0 && strcmp(c->from, "file") != 0 &&
        strcmp(c->from, "spool") != 0)
        return bg_cli_audit__bad("--from: expected kafka, file or spool, got", c->from);
    return 0;
}

/* The configuration to read: -c FILE, else $BUSGATE_CONFIG when set and
 * not empty, else /etc/busgate/busgate.yaml. A default that does not exist
 * is said as such (NULL), so that the message names -c rather than only a
 * file the operator never gave. */
static const char *bg_cli_audit__config_path(int argc, char **argv)
{
    const char *path = bg_cli_config_arg(argc, argv);
    if (path)
        return path;
    const char *env = getenv(BG_CLI_AUDIT_CONFIG_ENV);
    int from_env = env && *env;
    path = from_env ? env : BG_CLI_AUDIT_CONFIG_DEFAULT;
    if (access(path, F_OK) == 0)
        return path;
    fprintf(stderr, "busgate audit: no -c FILE given and %s%s does not exist%s\n",
            from_env ? BG_CLI_AUDIT_CONFIG_ENV "=" : "the default configuration ", path,
            from_env ? "" : " (set " BG_CLI_AUDIT_CONFIG_ENV " or pass -c FILE)");
    return NULL;
}

/* busgate audit tail|replay: 0 ok, 1 source or config error (or replay of
 * an unknown session), 2 bad usage. */
int bg_cli_audit(int argc, char **argv)
{
    bg_cli_audit_t c;
    memset(&c, 0, sizeof c);
    if (argc < 2) {
        bg_cli_audit__bad("missing tail or replay", NULL);
        return bg_cli_audit__usage();
    }
    c.replay = strcmp(argv[1], "replay") == 0;
    if (!c.replay && strcmp(argv[1], "tail") != 0) {
        bg_cli_audit__bad("unknown audit command", argv[1]);
        return bg_cli_audit__usage();
    }
    if (bg_cli_audit__args(&c, argc, argv) != 0)
        return bg_cli_audit__usage();
    const char *path = bg_cli_audit__config_path(argc, argv);
    if (!path)
        return 1;
    bg_config_t *cfg = bg_cli_load_config(path, stderr);
    if (!cfg)
        return 1;
    if (!cfg->audit.enabled) {
        fprintf(stderr, "busgate audit: auditing is not enabled in %s\n", path);
        bg_config_free(cfg);
        return 1;
    }
    signal(SIGINT, bg_cli_audit__on_signal);
    signal(SIGTERM, bg_cli_audit__on_signal);
    int rc = bg_cli_audit__read(&c, cfg) == 0 ? 0 : 1;
    if (c.replay && c.nevs && bg_cli_audit__one_session(&c) != 0)
        rc = 1;
    else if (c.replay && c.nevs)
        bg_cli_audit__timeline(&c);
    else if (c.replay) {
        fprintf(stderr, "busgate audit: no events for session %s\n", c.session);
        rc = 1;
    }
    bg_cli_audit__free(&c);
    bg_config_free(cfg);
    return rc;
}
