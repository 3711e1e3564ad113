/* Starts the console once every section file has registered (loaded last). */
"use strict";

WXB.ready.then(ADMIN.start); // the labels first (GET /api/v1/public/levels)
