/* /duplicates: groups of stored images that are the same picture, for review. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/status.h"

/* A member as JSON: what a user needs to choose which copy to keep. anchor_sha is the first
 * member's blob name: filled in by the first call (which is then identical to itself). */
static json_t *member_json(engine *e, const engine_dup_member *m, char anchor_sha[BLOB_HEX_LEN + 1], bool *identical) {
    store_image row;
    if (engine_get(e, m->id, false, &row, NULL, 0)) return NULL; /* deleted meanwhile */
    if (!anchor_sha[0]) memcpy(anchor_sha, row.sha256, BLOB_HEX_LEN + 1);
    *identical = !strcmp(row.sha256, anchor_sha);
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "id", json_integer(row.id));
        json_object_set_new(o, "name", api_text(row.name));
        json_object_set_new(o, "content_type", api_text(row.content_type));
        json_object_set_new(o, "width", json_integer(row.width));
        json_object_set_new(o, "height", json_integer(row.height));
        json_object_set_new(o, "size", json_integer(row.size));
        json_object_set_new(o, "dist", json_real(m->dist));
        json_object_set_new(o, "identical", json_boolean(*identical)); /* same bytes as the first */
    }
    store_image_clear(&row);
    return o;
}

static json_t *group_json(engine *e, const engine_dup_group *g) {
    json_t *members = json_array();
    char anchor_sha[BLOB_HEX_LEN + 1] = "";
    bool all_identical = true;
    for (int i = 0; members && i < g->n; i++) {
        bool identical = false;
        json_t *m = member_json(e, &g->members[i], anchor_sha, &identical);
        if (!m) continue;
        all_identical &= identical;
        json_array_append_new(members, m);
    }
    if (!members || json_array_size(members) < 2) { /* a member was deleted since: no group left */
        json_decref(members);
        return NULL;
    }
    return json_pack("{s:I,s:b,s:o}", "size", (json_int_t)json_array_size(members), "exact", all_identical,
                     "members", members);
}

void api_duplicates(engine *e, const http_request *req, http_response *res) {
    long long offset, limit;
    double max_dist;
    if (!api_int_arg(req, "offset", 0, 0, INT64_MAX / 2, &offset, res) ||
        !api_int_arg(req, "limit", 20, 1, 100, &limit, res) ||
        !api_number_arg(req, "max_dist", ENGINE_DUPLICATES_MAX_DIST, 0, 1, &max_dist, res))
        return;
    engine_dup_group *groups;
    int n;
    int64_t checked;
    char err[512];
    int rc = engine_duplicates(e, max_dist, &groups, &n, &checked, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    api_list list = {0};
    int64_t shown = 0;
    for (int64_t i = offset; i < n && shown < limit; i++, shown++) {
        json_t *g = group_json(e, &groups[i]);
        if (g) api_list_add(&list, g, API_PAGE_MAX_BYTES);
    }
    engine_dup_groups_free(groups, n);
    json_t *next = offset + shown < n ? json_integer(offset + shown) : json_null();
    api_list_finish(&list, 200,
                    json_pack("{s:I,s:I,s:I,s:o,s:f,s:I}", "total", (json_int_t)n, "offset", (json_int_t)offset, "limit",
                              (json_int_t)limit, "next_offset", next, "max_dist", max_dist, "images",
                              (json_int_t)checked),
                    res);
}
