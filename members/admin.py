"""Django admin (/django-admin/) for operators; administrators use the suite pages instead."""

from django.contrib import admin

from .models import (
    Administrator,
    AuditEntry,
    Department,
    Group,
    Member,
    Organization,
    Resource,
)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")


@admin.register(Administrator)
class AdministratorAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "created_at")
    list_select_related = ("user", "organization")
    raw_id_fields = ("user",)


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ("display_name", "email", "phone", "organization", "directory_managed")
    list_filter = ("directory_managed", "status")
    list_select_related = ("organization",)
    search_fields = ("display_name", "email", "phone", "employee_number")
    raw_id_fields = ("manager",)
    # An organization can have 100,000 members: no COUNT(*) for the changelist paginator.
    show_full_result_count = False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting here would bypass members.services.member_delete (resources rule, audit).
        return False


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ("name", "parent", "organization")
    list_select_related = ("parent", "organization")
    search_fields = ("name",)
    raw_id_fields = ("parent",)


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "directory_managed")
    search_fields = ("name",)


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "owner", "previous_owner_name", "organization")
    list_filter = ("kind",)
    list_select_related = ("owner", "organization")
    raw_id_fields = ("owner",)
    search_fields = ("name",)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "organization", "actor_label", "action")
    list_filter = ("action",)
    readonly_fields = ("organization", "actor", "actor_label", "action", "detail", "created_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
