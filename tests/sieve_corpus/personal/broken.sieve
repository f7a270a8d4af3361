if {
