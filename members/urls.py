from django.urls import path

from . import views

app_name = "members"

urlpatterns = [
    path("", views.member_list, name="member_list"),
    path("new/", views.member_create, name="member_create"),
    path("search/", views.member_search, name="member_search"),
    path("<int:pk>/", views.member_detail, name="member_detail"),
    path("<int:pk>/edit/", views.member_edit, name="member_edit"),
    path("<int:pk>/delete/", views.member_delete, name="member_delete"),
    path("departments/", views.department_list, name="department_list"),
    path("departments/<int:pk>/edit/", views.department_edit, name="department_edit"),
    path("groups/", views.group_list, name="group_list"),
    path("groups/<int:pk>/", views.group_detail, name="group_detail"),
    path("resources/", views.resource_list, name="resource_list"),
    path(
        "resources/unassigned/",
        views.resource_unassigned_list,
        name="resource_unassigned_list",
    ),
    path("resources/<int:pk>/reassign/", views.resource_reassign, name="resource_reassign"),
]
