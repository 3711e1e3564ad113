/* Starts the console once every section file has registered (loaded last). */
"use strict";

ADMIN.start();
