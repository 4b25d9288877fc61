/* /index/...: rebuild the index, report its health. */
#include "api/api.h"
#include "util/status.h"

void api_index_reindex(engine *e, http_response *res) {
    char err[512];
    int rc = engine_reindex(e, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else http_result(res, 200, NULL, "reindex finished");
}

void api_index_health(engine *e, http_response *res) {
    bool healthy = false;
    char msg[512];
    int rc = engine_health(e, &healthy, msg, sizeof msg);
    if (rc) http_fail(res, rc, msg);
    else http_result(res, 200, json_boolean(healthy), msg);
}
