require "include";
include :personal "self";
