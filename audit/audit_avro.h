/* Avro form of audit events for the Kafka topic (audit.format: avro).
 * Schema: audit/busgate-audit.avsc. Not thread-safe: one encoder per owner
 * (the Kafka sink, on the audit thread). */
#ifndef BG_AUDIT_AVRO_H
#define BG_AUDIT_AVRO_H

#include <stddef.h>
#include <stdint.h>

typedef struct bg_audit_avro_s bg_audit_avro_t;

/* The Avro schema busgate encodes with (JSON text, static). */
const char *bg_audit_avro_schema(void);

/* An encoder. schema_id >= 0: Confluent wire format ([0][u32 BE id][Avro]);
 * < 0: plain Avro binary. Returns NULL with err filled on failure. */
bg_audit_avro_t *bg_audit_avro_new(int32_t schema_id, char *err, size_t errlen);

/* Encodes one event given in its JSON form (json[0..len)) into dst (cap
 * bytes). Returns the length, or 0 when the JSON is malformed or dst is too
 * small. */
size_t bg_audit_avro_encode(bg_audit_avro_t *av, const char *json, size_t len, uint8_t *dst,
                            size_t cap);

/* Decodes one event from its Avro form (as encoded above, with the wire
 * header when the schema id is >= 0) back to JSON: a malloc'd NUL-terminated
 * string (fields absent in the Avro form are left out), or NULL when p is
 * not such an event. An event written with the schema's previous version
 * (before the fields part and parts) decodes too. For `busgate audit
 * tail/replay`. */
char *bg_audit_avro_decode(bg_audit_avro_t *av, const uint8_t *p, size_t n);

/* NULL is a no-op. */
void bg_audit_avro_free(bg_audit_avro_t *av);

#endif
