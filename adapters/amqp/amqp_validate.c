/* Pre-validation of AMQP 0-9-1 frames (see amqp_validate.h).
 *
 * One walker over the wire format, driven by the argument signatures of
 * amqp_method_table.c. It never allocates; recursion is bounded by
 * max_depth, itself clamped to BG_AMQP__DEPTH_CEILING. */
#include "adapters/amqp/amqp_validate.h"

#include "adapters/amqp/amqp_method.h"

#include <string.h>

#define BG_AMQP__DEPTH_CEILING 32
#define BG_AMQP__BASIC_CLASS 60

typedef struct bg_amqp__walk_s {
    uint32_t max_depth, max_entries;
    uint64_t max_body;
    uint32_t entries; /* table entries + array elements seen in this frame */
    int status;       /* first refusal, BG_AMQP_OK while none */
    const char *why;
} bg_amqp__walk_t;

/* Zero fields take the default, so a zeroed struct is usable. */
static void bg_amqp__walk_init(bg_amqp__walk_t *w, const bg_amqp_limits_t *lim)
{
    const bg_amqp_limits_t def = BG_AMQP_LIMITS_DEFAULT;
    if (!lim)
        lim = &def;
    w->max_depth = lim->max_depth ? lim->max_depth : def.max_depth;
    if (w->max_depth > BG_AMQP__DEPTH_CEILING)
        w->max_depth = BG_AMQP__DEPTH_CEILING;
    w->max_entries = lim->max_entries ? lim->max_entries : def.max_entries;
    w->max_body = lim->max_body_size ? lim->max_body_size : def.max_body_size;
    w->entries = 0;
    w->status = BG_AMQP_OK;
    w->why = NULL;
}

/* Records the first refusal; returns 0 so callers can `return bg_amqp__refuse(...)`. */
static int bg_amqp__refuse(bg_amqp__walk_t *w, int status, const char *why)
{
    if (w->status == BG_AMQP_OK) {
        w->status = status;
        w->why = why;
    }
    return 0;
}

static int bg_amqp__done(const bg_amqp__walk_t *w, const char **why)
{
    if (why)
        *why = w->why;
    return w->status;
}

static int bg_amqp__value(bg_rd_t *rd, bg_amqp__walk_t *w, uint32_t depth);

/* Walks the entries of a table body (no size prefix) filling rd exactly. */
static int bg_amqp__entries(bg_rd_t *rd, bg_amqp__walk_t *w, uint32_t depth)
{
    while (bg_rd_left(rd) > 0) {
        if (++w->entries > w->max_entries)
            return bg_amqp__refuse(w, BG_AMQP_ERR_LIMIT, "too many field table entries");
        uint8_t klen = bg_rd_u8(rd);
        bg_rd_skip(rd, klen);
        if (rd->err)
            return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "field name runs past its table");
        if (!bg_amqp__value(rd, w, depth))
            return 0;
    }
    return 1;
}

/* Walks the values of an array body filling rd exactly. */
static int bg_amqp__elements(bg_rd_t *rd, bg_amqp__walk_t *w, uint32_t depth)
{
    while (bg_rd_left(rd) > 0) {
        if (++w->entries > w->max_entries)
            return bg_amqp__refuse(w, BG_AMQP_ERR_LIMIT, "too many field array elements");
        if (!bg_amqp__value(rd, w, depth))
            return 0;
    }
    return 1;
}

/* A size-prefixed table (is_table) or array that will sit at depth. The
 * sub-reader makes its size nest exactly inside the parent — the check
 * rabbitmq-c 0.11 does not make. */
static int bg_amqp__container(bg_rd_t *rd, bg_amqp__walk_t *w, uint32_t depth, int is_table)
{
    if (depth > w->max_depth)
        return bg_amqp__refuse(w, BG_AMQP_ERR_LIMIT, "field table nesting too deep");
    uint32_t n = bg_rd_u32(rd);
    bg_rd_t sub;
    if (rd->err || !bg_rd_sub(rd, n, &sub))
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED,
                               is_table ? "field table runs past its container"
                                        : "field array runs past its container");
    return is_table ? bg_amqp__entries(&sub, w, depth) : bg_amqp__elements(&sub, w, depth);
}

/* Fixed width of a field value kind; -1 for variable or unknown kinds. */
static int bg_amqp__kind_width(uint8_t kind)
{
    switch (kind) {
    case 'V':
        return 0;
    case 't':
    case 'b':
    case 'B':
        return 1;
    case 's':
    case 'u':
        return 2;
    case 'I':
    case 'i':
    case 'f':
        return 4;
    case 'D':
        return 5;
    case 'l':
    case 'L':
    case 'd':
    case 'T':
        return 8;
    default:
        return -1;
    }
}

/* One field value (kind octet + value) inside a container at depth. */
static int bg_amqp__value(bg_rd_t *rd, bg_amqp__walk_t *w, uint32_t depth)
{
    uint8_t kind = bg_rd_u8(rd);
    if (rd->err)
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "field value missing");
    int width = bg_amqp__kind_width(kind);
    if (width >= 0) {
        bg_rd_skip(rd, (size_t)width);
    } else if (kind == 'S' || kind == 'x') {
        bg_rd_skip(rd, bg_rd_u32(rd));
    } else if (kind == 'F' || kind == 'A') {
        return bg_amqp__container(rd, w, depth + 1, kind == 'F');
    } else {
        return bg_amqp__refuse(w, BG_AMQP_ERR_MALFORMED, "unknown field value type");
    }
    if (rd->err)
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "field value runs past its container");
    return 1;
}

/* One argument or property of signature letter sig other than a bit. */
static int bg_amqp__arg(bg_rd_t *rd, bg_amqp__walk_t *w, char sig)
{
    switch (sig) {
    case 'o':
        bg_rd_skip(rd, 1);
        break;
    case 'h':
        bg_rd_skip(rd, 2);
        break;
    case 'l':
        bg_rd_skip(rd, 4);
        break;
    case 'q':
    case 't':
        bg_rd_skip(rd, 8);
        break;
    case 's':
        bg_rd_skip(rd, bg_rd_u8(rd));
        break;
    case 'S':
        bg_rd_skip(rd, bg_rd_u32(rd));
        break;
    case 'T':
        return bg_amqp__container(rd, w, 1, 1);
    default: /* a table typo: refuse rather than guess */
        return bg_amqp__refuse(w, BG_AMQP_ERR_MALFORMED, "bad argument signature");
    }
    if (rd->err)
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "argument runs past the frame");
    return 1;
}

static int bg_amqp__args(bg_rd_t *rd, bg_amqp__walk_t *w, const char *sig)
{
    unsigned bits = 8; /* bits used in the current bit octet; 8 = none open */
    for (; *sig; sig++) {
        if (*sig != 'b') {
            bits = 8;
            if (!bg_amqp__arg(rd, w, *sig))
                return 0;
            continue;
        }
        if (bits == 8) {
            bg_rd_skip(rd, 1);
            if (rd->err)
                return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "argument runs past the frame");
            bits = 0;
        }
        bits++;
    }
    if (bg_rd_left(rd))
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRAILING, "trailing bytes after method arguments");
    return 1;
}

static int bg_amqp__method(bg_amqp__walk_t *w, uint16_t channel, const uint8_t *p, size_t len)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    uint16_t cls = bg_rd_u16(&rd);
    uint16_t meth = bg_rd_u16(&rd);
    if (rd.err)
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "method frame shorter than its ids");
    const bg_amqp_method_info_t *info = bg_amqp_method_info(BG_AMQP_METHOD_ID(cls, meth));
    if (!info)
        return bg_amqp__refuse(w, BG_AMQP_ERR_UNKNOWN_METHOD, "unknown class or method");
    /* Spec: connection-class methods on channel 0, every other class on a
     * real channel; RabbitMQ closes the connection otherwise. */
    if (cls == 10 && channel != 0)
        return bg_amqp__refuse(w, BG_AMQP_ERR_CHANNEL, "connection method on a non-zero channel");
    if (cls != 10 && channel == 0)
        return bg_amqp__refuse(w, BG_AMQP_ERR_CHANNEL, "channel method on channel 0");
    return bg_amqp__args(&rd, w, info->args);
}

int bg_amqp_validate_method(uint16_t channel, const uint8_t *p, size_t len,
                            const bg_amqp_limits_t *lim, const char **why)
{
    bg_amqp__walk_t w;
    bg_amqp__walk_init(&w, lim);
    bg_amqp__method(&w, channel, p, len);
    return bg_amqp__done(&w, why);
}

/* Property kinds of the basic class by flag bit (15 = content-type ... 2 =
 * cluster-id): shortstrs except headers (table), delivery-mode and priority
 * (octets) and timestamp. */
static char bg_amqp__prop_sig(int bit)
{
    switch (bit) {
    case 13:
        return 'T';
    case 12:
    case 11:
        return 'o';
    case 6:
        return 't';
    default:
        return 's';
    }
}

static int bg_amqp__props(bg_amqp__walk_t *w, const uint8_t *p, size_t len)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    uint16_t flags = bg_rd_u16(&rd);
    if (rd.err)
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "property flags missing");
    /* rabbitmq-c 0.11 shifts continuation words past 64 bits (UB); the basic
     * class has 13 properties, so one word is all a correct peer sends. */
    if (flags & 1)
        return bg_amqp__refuse(w, BG_AMQP_ERR_MALFORMED, "property flags continuation bit set");
    if (flags & 2)
        return bg_amqp__refuse(w, BG_AMQP_ERR_MALFORMED, "reserved property flag set");
    for (int bit = 15; bit >= 2; bit--) {
        if ((flags & (1u << bit)) && !bg_amqp__arg(&rd, w, bg_amqp__prop_sig(bit)))
            return 0;
    }
    if (bg_rd_left(&rd))
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRAILING, "trailing bytes after content properties");
    return 1;
}

int bg_amqp_validate_properties(const uint8_t *p, size_t len, const bg_amqp_limits_t *lim,
                                const char **why)
{
    bg_amqp__walk_t w;
    bg_amqp__walk_init(&w, lim);
    bg_amqp__props(&w, p, len);
    return bg_amqp__done(&w, why);
}

static int bg_amqp__header(bg_amqp__walk_t *w, uint16_t channel, const uint8_t *p, size_t len)
{
    if (channel == 0)
        return bg_amqp__refuse(w, BG_AMQP_ERR_CHANNEL, "content header on channel 0");
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    uint16_t cls = bg_rd_u16(&rd);
    uint16_t weight = bg_rd_u16(&rd);
    uint64_t body_size = bg_rd_u64(&rd);
    if (rd.err)
        return bg_amqp__refuse(w, BG_AMQP_ERR_TRUNCATED, "content header truncated");
    if (cls != BG_AMQP__BASIC_CLASS)
        return bg_amqp__refuse(w, BG_AMQP_ERR_MALFORMED, "content header class is not basic");
    if (weight != 0)
        return bg_amqp__refuse(w, BG_AMQP_ERR_MALFORMED, "content header weight not 0");
    if (body_size > w->max_body)
        return bg_amqp__refuse(w, BG_AMQP_ERR_TOO_LARGE, "content body size over the limit");
    return bg_amqp__props(w, rd.p, bg_rd_left(&rd));
}

int bg_amqp_validate_header(uint16_t channel, const uint8_t *p, size_t len,
                            const bg_amqp_limits_t *lim, const char **why)
{
    bg_amqp__walk_t w;
    bg_amqp__walk_init(&w, lim);
    bg_amqp__header(&w, channel, p, len);
    return bg_amqp__done(&w, why);
}

int bg_amqp_validate_heartbeat(uint16_t channel, size_t len, const char **why)
{
    const char *reason = NULL;
    int status = BG_AMQP_OK;
    if (channel != 0) {
        status = BG_AMQP_ERR_CHANNEL;
        reason = "heartbeat on a non-zero channel";
    } else if (len != 0) {
        status = BG_AMQP_ERR_MALFORMED;
        reason = "heartbeat with a payload";
    }
    if (why)
        *why = reason;
    return status;
}

static int bg_amqp__no(const char **why, const char *reason, int status)
{
    *why = reason;
    return status;
}

/* The rules of bg_amqp_validate_server_frame, one reason each. */
static int bg_amqp__server_frame(uint8_t type, uint16_t channel, uint32_t id, int open,
                                 int content, const char **why)
{
    if (type == BG_AMQP_FRAME_METHOD) {
        const bg_amqp_method_info_t *info = bg_amqp_method_info(id);
        if (!info || !(info->flags & BG_AMQP_M_SERVER))
            return bg_amqp__no(why, "unknown method", BG_AMQP_ERR_UNKNOWN_METHOD);
        if ((id >> 16 == 10) != (channel == 0))
            return bg_amqp__no(why,
                               channel ? "connection method on a channel other than 0"
                                       : "channel method on channel 0",
                               BG_AMQP_ERR_CHANNEL);
        if (channel && !open)
            return bg_amqp__no(why, "method on a channel that is not open", BG_AMQP_ERR_CHANNEL);
        if (content)
            return bg_amqp__no(why, "method frame in the middle of a content", BG_AMQP_ERR_FRAME);
        return BG_AMQP_OK;
    }
    if (type != BG_AMQP_FRAME_HEADER && type != BG_AMQP_FRAME_BODY)
        return bg_amqp__no(why, "unexpected frame type", BG_AMQP_ERR_FRAME);
    if (channel == 0)
        return bg_amqp__no(why, "content frame on channel 0", BG_AMQP_ERR_CHANNEL);
    if (!open)
        return bg_amqp__no(why, "content frame on a channel that is not open", BG_AMQP_ERR_CHANNEL);
    if (content == 0)
        return bg_amqp__no(why, "content frame with no delivery pending", BG_AMQP_ERR_FRAME);
    if (type == BG_AMQP_FRAME_BODY && content == 1)
        return bg_amqp__no(why, "content body before its header", BG_AMQP_ERR_FRAME);
    if (type == BG_AMQP_FRAME_HEADER && content == 2)
        return bg_amqp__no(why, "content header in the middle of a body", BG_AMQP_ERR_FRAME);
    return BG_AMQP_OK;
}

int bg_amqp_validate_server_frame(uint8_t type, uint16_t channel, uint32_t id, int open,
                                  int content, const char **why)
{
    const char *reason = NULL;
    int status = bg_amqp__server_frame(type, channel, id, open, content, &reason);
    if (why)
        *why = reason;
    return status;
}

int bg_amqp_validate_table_body(const uint8_t *p, size_t len, const bg_amqp_limits_t *lim,
                                const char **why)
{
    bg_amqp__walk_t w;
    bg_amqp__walk_init(&w, lim);
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    if (w.max_depth >= 1)
        bg_amqp__entries(&rd, &w, 1);
    return bg_amqp__done(&w, why);
}

int bg_amqp_validate_frame(const bg_amqp_frame_t *f, const bg_amqp_limits_t *lim,
                           const char **why)
{
    const uint8_t *p = f->payload;
    switch (f->type) {
    case BG_AMQP_FRAME_METHOD:
        return bg_amqp_validate_method(f->channel, p, f->size, lim, why);
    case BG_AMQP_FRAME_HEADER:
        return bg_amqp_validate_header(f->channel, p, f->size, lim, why);
    case BG_AMQP_FRAME_BODY:
        if (why)
            *why = f->channel ? NULL : "content body on channel 0";
        return f->channel ? BG_AMQP_OK : BG_AMQP_ERR_CHANNEL;
    case BG_AMQP_FRAME_HEARTBEAT:
        return bg_amqp_validate_heartbeat(f->channel, f->size, why);
    default:
        if (why)
            *why = "unknown frame type";
        return BG_AMQP_ERR_FRAME;
    }
}

int bg_amqp_table_body_find(const uint8_t *p, size_t len, const char *key, uint8_t *kind,
                            bg_slice_t *value)
{
    size_t klen = strlen(key);
    bg_amqp__walk_t w;
    bg_amqp__walk_init(&w, NULL);
    w.max_depth = BG_AMQP__DEPTH_CEILING;
    w.max_entries = UINT32_MAX;
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    while (bg_rd_left(&rd) > 0) {
        bg_slice_t k = bg_rd_bytes(&rd, bg_rd_u8(&rd));
        const uint8_t *v = rd.p;
        if (rd.err || !bg_amqp__value(&rd, &w, 1))
            return 0;
        if ((size_t)k.len != klen || (klen && memcmp(k.p, key, klen) != 0))
            continue;
        *kind = v[0];
        size_t skip = (v[0] == 'S' || v[0] == 'x' || v[0] == 'F' || v[0] == 'A') ? 5 : 1;
        value->p = v + skip;
        value->len = (int32_t)(rd.p - v - (ptrdiff_t)skip);
        return 1;
    }
    return 0;
}
