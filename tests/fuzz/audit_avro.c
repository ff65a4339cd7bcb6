/* Fuzz target: the Avro audit event decoder (bg_audit_avro_decode) that
 * `busgate audit tail/replay` runs on the audit topic's messages with
 * audit.format: avro. Arbitrary bytes, with and without the Confluent wire
 * header. Invariant: whatever decodes is JSON that encodes back to the same
 * bytes and decodes to the same JSON again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_avro.h"

/* avro-c leaks the string it was reading when the input ends inside it: its
 * bug, in an error path, a few bytes per malformed message. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libavro\n"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bg_audit_avro_t *av[2];
    if (!av[0]) {
        char err[256];
        if (!(av[0] = bg_audit_avro_new(-1, err, sizeof err)) ||
            !(av[1] = bg_audit_avro_new(7, err, sizeof err)))
            abort();
    }
    for (int i = 0; i < 2; i++) {
        char *json = bg_audit_avro_decode(av[i], data, size);
        if (!json)
            continue;
        static uint8_t buf[1 << 20];
        size_t n = bg_audit_avro_encode(av[i], json, strlen(json), buf, sizeof buf);
        char *again = n ? bg_audit_avro_decode(av[i], buf, n) : NULL;
        if (!again || strcmp(json, again) != 0)
            abort();
        free(again);
        free(json);
    }
    return 0;
}
