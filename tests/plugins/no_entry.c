/* Broken on purpose: a shared library that exports no shrink_plugin_entry. */
int not_a_shrink_plugin(void) { return 42; }
